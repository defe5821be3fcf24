//! Conformance table of the pattern language: (pattern, event, expected
//! match) for every operator, arrays, missing fields, type mismatches,
//! Unicode and deep nesting.
//!
//! Each case is checked four ways, which must agree:
//!
//! - [`Pattern::matches`];
//! - [`Pattern::explain`];
//! - a [`MatchEngine`] that contains the patterns of every case at once, so
//!   the engine's index cannot lose or add a match;
//! - [`Pattern::matches`] on the event decoded with only the fields that
//!   patterns read, as the consumer decodes records.

use std::sync::Arc;

use event_hub::event::{projection, FieldSet};
use event_hub::matching::pattern::{MAX_CONDITIONS, MAX_DEPTH, MAX_OR_ALTERNATIVES};
use event_hub::matching::{MatchEngine, Pattern};
use serde_json::{json, Map, Value};

/// One row of the table.
struct Case {
    name: &'static str,
    pattern: Value,
    event: Value,
    expected: bool,
}

fn case(name: &'static str, pattern: Value, event: Value, expected: bool) -> Case {
    Case {
        name,
        pattern,
        event,
        expected,
    }
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        // Exact strings.
        case("string equal", json!({"a": ["x"]}), json!({"a": "x"}), true),
        case("string differs", json!({"a": ["x"]}), json!({"a": "y"}), false),
        case("string shorthand", json!({"a": "x"}), json!({"a": "x"}), true),
        case("string shorthand differs", json!({"a": "x"}), json!({"a": "X"}), false),
        case("string is case sensitive", json!({"a": ["abc"]}), json!({"a": "ABC"}), false),
        case("empty string", json!({"a": [""]}), json!({"a": ""}), true),
        case("empty string is not missing", json!({"a": [""]}), json!({}), false),
        case("empty string is not null", json!({"a": [""]}), json!({"a": null}), false),
        case("string with spaces", json!({"a": ["two words"]}), json!({"a": "two words"}), true),
        case("string prefix is not equal", json!({"a": ["abc"]}), json!({"a": "abcd"}), false),
        case("extra fields ignored", json!({"a": "x"}), json!({"a": "x", "b": "y", "c": {"d": 1}}), true),
        // Numbers.
        case("integer equal", json!({"n": [5]}), json!({"n": 5}), true),
        case("integer differs", json!({"n": [5]}), json!({"n": 6}), false),
        case("integer equals float", json!({"n": [5]}), json!({"n": 5.0}), true),
        case("float equals integer", json!({"n": [5.0]}), json!({"n": 5}), true),
        case("exponent equals integer", json!({"n": [500]}), json!({"n": 5e2}), true),
        case("negative integer", json!({"n": [-7]}), json!({"n": -7}), true),
        case("negative zero equals zero", json!({"n": [0]}), json!({"n": -0.0}), true),
        case("fraction equal", json!({"n": [0.25]}), json!({"n": 0.25}), true),
        case("fraction differs", json!({"n": [0.25]}), json!({"n": 0.26}), false),
        case("large integers compare exactly", json!({"n": [9007199254740993_u64]}), json!({"n": 9007199254740992_u64}), false),
        case("u64 max equal", json!({"n": [u64::MAX]}), json!({"n": u64::MAX}), true),
        case("i64 min equal", json!({"n": [i64::MIN]}), json!({"n": i64::MIN}), true),
        // Type mismatches: number, string, boolean and null never convert.
        case("number pattern, string event", json!({"n": [5]}), json!({"n": "5"}), false),
        case("string pattern, number event", json!({"n": ["5"]}), json!({"n": 5}), false),
        case("boolean pattern, string event", json!({"b": [true]}), json!({"b": "true"}), false),
        case("string pattern, boolean event", json!({"b": ["true"]}), json!({"b": true}), false),
        case("zero is not false", json!({"b": [false]}), json!({"b": 0}), false),
        case("null pattern, string event", json!({"a": [null]}), json!({"a": "null"}), false),
        case("string pattern, object event", json!({"a": ["x"]}), json!({"a": {"x": "x"}}), false),
        case("number pattern, array of strings", json!({"n": [1]}), json!({"n": ["1"]}), false),
        // Booleans and null.
        case("true equal", json!({"b": [true]}), json!({"b": true}), true),
        case("true differs", json!({"b": [true]}), json!({"b": false}), false),
        case("false shorthand", json!({"b": false}), json!({"b": false}), true),
        case("null equal", json!({"a": [null]}), json!({"a": null}), true),
        case("null shorthand", json!({"a": null}), json!({"a": null}), true),
        case("null needs the field", json!({"a": [null]}), json!({}), false),
        // Alternatives (OR).
        case("or first", json!({"a": ["x", "y", "z"]}), json!({"a": "x"}), true),
        case("or last", json!({"a": ["x", "y", "z"]}), json!({"a": "z"}), true),
        case("or none", json!({"a": ["x", "y", "z"]}), json!({"a": "w"}), false),
        case("or mixed types", json!({"a": ["1", 1, true, null]}), json!({"a": null}), true),
        case("or mixed types number", json!({"a": ["1", 1, true, null]}), json!({"a": 1.0}), true),
        case("or value and operator", json!({"a": ["main", {"prefix": "release/"}]}), json!({"a": "release/2"}), true),
        case("or value and operator none", json!({"a": ["main", {"prefix": "release/"}]}), json!({"a": "dev"}), false),
        // Fields (AND).
        case("and all", json!({"a": "x", "b": "y"}), json!({"a": "x", "b": "y"}), true),
        case("and one differs", json!({"a": "x", "b": "y"}), json!({"a": "x", "b": "z"}), false),
        case("and one missing", json!({"a": "x", "b": "y"}), json!({"a": "x"}), false),
        // Nested objects.
        case("nested equal", json!({"a": {"b": "x"}}), json!({"a": {"b": "x"}}), true),
        case("nested differs", json!({"a": {"b": "x"}}), json!({"a": {"b": "y"}}), false),
        case("nested and", json!({"a": {"b": "x", "c": [1]}}), json!({"a": {"b": "x", "c": 1}}), true),
        case("nested and one differs", json!({"a": {"b": "x", "c": [1]}}), json!({"a": {"b": "x", "c": 2}}), false),
        case("nested missing parent", json!({"a": {"b": "x"}}), json!({"b": "x"}), false),
        case("nested parent is string", json!({"a": {"b": "x"}}), json!({"a": "x"}), false),
        case("nested parent is null", json!({"a": {"b": [null]}}), json!({"a": null}), false),
        case("nested three levels", json!({"a": {"b": {"c": ["x"]}}}), json!({"a": {"b": {"c": "x"}}}), true),
        case("nested three levels differs", json!({"a": {"b": {"c": ["x"]}}}), json!({"a": {"b": {"c": "y"}}}), false),
        case("dotted key is one field", json!({"a.b": "x"}), json!({"a": {"b": "x"}}), false),
        case("dotted key matches itself", json!({"a.b": "x"}), json!({"a.b": "x"}), true),
        case("operator name outside array is a field", json!({"ref": {"prefix": "refs/"}}), json!({"ref": "refs/heads/main"}), false),
        case("operator name outside array matches field", json!({"ref": {"prefix": "refs/"}}), json!({"ref": {"prefix": "refs/"}}), true),
        // Arrays in events.
        case("array contains value", json!({"a": ["x"]}), json!({"a": ["w", "x"]}), true),
        case("array lacks value", json!({"a": ["x"]}), json!({"a": ["w", "y"]}), false),
        case("empty array", json!({"a": ["x"]}), json!({"a": []}), false),
        case("array intersects alternatives", json!({"a": ["x", "y"]}), json!({"a": ["z", "y"]}), true),
        case("nested arrays flattened", json!({"a": [3]}), json!({"a": [1, [2, [3]]]}), true),
        case("nested arrays flattened none", json!({"a": [4]}), json!({"a": [1, [2, [3]]]}), false),
        case("array of mixed types", json!({"a": ["1"]}), json!({"a": [1, true, null, "1"]}), true),
        case("array of objects one matches", json!({"a": {"b": "x"}}), json!({"a": [{"b": "y"}, {"b": "x"}]}), true),
        case("array of objects none matches", json!({"a": {"b": "x"}}), json!({"a": [{"b": "y"}, {"c": "x"}]}), false),
        case("array of objects not combined", json!({"a": {"b": "x", "c": "y"}}), json!({"a": [{"b": "x"}, {"c": "y"}]}), false),
        case("array of objects one has both", json!({"a": {"b": "x", "c": "y"}}), json!({"a": [{"b": "x"}, {"b": "x", "c": "y"}]}), true),
        case("array of arrays of objects", json!({"a": {"b": "x"}}), json!({"a": [[{"b": "x"}]]}), true),
        case("arrays at two levels", json!({"a": {"b": ["x"]}}), json!({"a": [{"b": ["y", "x"]}]}), true),
        case("array of objects skips scalars", json!({"a": {"b": "x"}}), json!({"a": ["x", {"b": "x"}]}), true),
        case("array at top level is not an object", json!({"a": "x"}), json!([{"a": "x"}]), false),
        // Missing fields.
        case("missing field", json!({"a": "x"}), json!({}), false),
        case("missing field among others", json!({"a": "x"}), json!({"b": "x", "c": "x"}), false),
        case("missing nested field", json!({"a": {"b": "x"}}), json!({"a": {}}), false),
        case("event is a string", json!({"a": "x"}), json!("x"), false),
        case("event is null", json!({"a": [null]}), json!(null), false),
        // prefix.
        case("prefix", json!({"r": [{"prefix": "refs/tags/"}]}), json!({"r": "refs/tags/v1"}), true),
        case("prefix whole value", json!({"r": [{"prefix": "refs/tags/"}]}), json!({"r": "refs/tags/"}), true),
        case("prefix differs", json!({"r": [{"prefix": "refs/tags/"}]}), json!({"r": "refs/heads/main"}), false),
        case("prefix longer than value", json!({"r": [{"prefix": "refs/tags/"}]}), json!({"r": "refs"}), false),
        case("prefix case sensitive", json!({"r": [{"prefix": "Refs/"}]}), json!({"r": "refs/x"}), false),
        case("prefix on number", json!({"r": [{"prefix": "1"}]}), json!({"r": 12}), false),
        case("prefix on missing", json!({"r": [{"prefix": "a"}]}), json!({}), false),
        case("prefix on array", json!({"r": [{"prefix": "b"}]}), json!({"r": ["a", "bc"]}), true),
        case("empty prefix on string", json!({"r": [{"prefix": ""}]}), json!({"r": "anything"}), true),
        case("empty prefix on null", json!({"r": [{"prefix": ""}]}), json!({"r": null}), false),
        case("prefix ignore case", json!({"r": [{"prefix": {"equals-ignore-case": "REFS/Tags/"}}]}), json!({"r": "refs/TAGS/v1"}), true),
        case("prefix ignore case differs", json!({"r": [{"prefix": {"equals-ignore-case": "REFS/Tags/"}}]}), json!({"r": "refs/heads/v1"}), false),
        // suffix.
        case("suffix", json!({"f": [{"suffix": ".png"}]}), json!({"f": "a.png"}), true),
        case("suffix differs", json!({"f": [{"suffix": ".png"}]}), json!({"f": "a.jpg"}), false),
        case("suffix case sensitive", json!({"f": [{"suffix": ".png"}]}), json!({"f": "a.PNG"}), false),
        case("suffix ignore case", json!({"f": [{"suffix": {"equals-ignore-case": ".PNG"}}]}), json!({"f": "a.png"}), true),
        case("suffix on number", json!({"f": [{"suffix": "5"}]}), json!({"f": 15}), false),
        case("suffix on array", json!({"f": [{"suffix": ".md"}]}), json!({"f": ["a.rs", "b.md"]}), true),
        // equals-ignore-case.
        case("equals-ignore-case", json!({"u": [{"equals-ignore-case": "OctoCat"}]}), json!({"u": "octocat"}), true),
        case("equals-ignore-case upper event", json!({"u": [{"equals-ignore-case": "octocat"}]}), json!({"u": "OCTOCAT"}), true),
        case("equals-ignore-case longer", json!({"u": [{"equals-ignore-case": "octocat"}]}), json!({"u": "octocat-bot"}), false),
        case("equals-ignore-case on number", json!({"u": [{"equals-ignore-case": "1"}]}), json!({"u": 1}), false),
        case("equals-ignore-case on missing", json!({"u": [{"equals-ignore-case": "x"}]}), json!({}), false),
        // anything-but.
        case("anything-but value", json!({"a": [{"anything-but": "deleted"}]}), json!({"a": "created"}), true),
        case("anything-but value excluded", json!({"a": [{"anything-but": "deleted"}]}), json!({"a": "deleted"}), false),
        case("anything-but on missing", json!({"a": [{"anything-but": "deleted"}]}), json!({}), false),
        case("anything-but on null", json!({"a": [{"anything-but": "deleted"}]}), json!({"a": null}), true),
        case("anything-but on object", json!({"a": [{"anything-but": "deleted"}]}), json!({"a": {"b": 1}}), false),
        case("anything-but list", json!({"a": [{"anything-but": ["x", "y"]}]}), json!({"a": "z"}), true),
        case("anything-but list excluded", json!({"a": [{"anything-but": ["x", "y"]}]}), json!({"a": "y"}), false),
        case("anything-but number", json!({"a": [{"anything-but": [500, 503]}]}), json!({"a": 200}), true),
        case("anything-but number excluded as float", json!({"a": [{"anything-but": [500, 503]}]}), json!({"a": 503.0}), false),
        case("anything-but number, string event", json!({"a": [{"anything-but": [503]}]}), json!({"a": "503"}), true),
        case("anything-but excludes null", json!({"a": [{"anything-but": [null]}]}), json!({"a": null}), false),
        case("anything-but array any element", json!({"a": [{"anything-but": "x"}]}), json!({"a": ["x", "y"]}), true),
        case("anything-but array all excluded", json!({"a": [{"anything-but": "x"}]}), json!({"a": ["x", "x"]}), false),
        case("anything-but empty array", json!({"a": [{"anything-but": "x"}]}), json!({"a": []}), false),
        case("anything-but prefix", json!({"a": [{"anything-but": {"prefix": "refs/tags/"}}]}), json!({"a": "refs/heads/main"}), true),
        case("anything-but prefix excluded", json!({"a": [{"anything-but": {"prefix": "refs/tags/"}}]}), json!({"a": "refs/tags/v1"}), false),
        case("anything-but prefix keeps numbers", json!({"a": [{"anything-but": {"prefix": "1"}}]}), json!({"a": 12}), true),
        case("anything-but suffix", json!({"a": [{"anything-but": {"suffix": ".md"}}]}), json!({"a": "main.rs"}), true),
        case("anything-but suffix excluded", json!({"a": [{"anything-but": {"suffix": ".md"}}]}), json!({"a": "README.md"}), false),
        case("anything-but prefix ignore case", json!({"a": [{"anything-but": {"prefix": {"equals-ignore-case": "WIP/"}}}]}), json!({"a": "wip/spike"}), false),
        case("anything-but suffix ignore case", json!({"a": [{"anything-but": {"suffix": {"equals-ignore-case": ".MD"}}}]}), json!({"a": "notes.md"}), false),
        case("anything-but or missing", json!({"a": [{"anything-but": "dev"}, {"exists": false}]}), json!({}), true),
        // numeric.
        case("numeric greater", json!({"n": [{"numeric": [">", 100]}]}), json!({"n": 101}), true),
        case("numeric greater edge", json!({"n": [{"numeric": [">", 100]}]}), json!({"n": 100}), false),
        case("numeric at least edge", json!({"n": [{"numeric": [">=", 100]}]}), json!({"n": 100}), true),
        case("numeric less", json!({"n": [{"numeric": ["<", 0]}]}), json!({"n": -0.5}), true),
        case("numeric less edge", json!({"n": [{"numeric": ["<", 0]}]}), json!({"n": 0}), false),
        case("numeric at most edge", json!({"n": [{"numeric": ["<=", 0]}]}), json!({"n": 0.0}), true),
        case("numeric equals", json!({"n": [{"numeric": ["=", 42]}]}), json!({"n": 42.0}), true),
        case("numeric equals differs", json!({"n": [{"numeric": ["=", 42]}]}), json!({"n": 42.5}), false),
        case("numeric range inside", json!({"n": [{"numeric": [">=", 10, "<", 20]}]}), json!({"n": 19.99}), true),
        case("numeric range low edge", json!({"n": [{"numeric": [">=", 10, "<", 20]}]}), json!({"n": 10}), true),
        case("numeric range high edge", json!({"n": [{"numeric": [">=", 10, "<", 20]}]}), json!({"n": 20}), false),
        case("numeric range bounds reversed", json!({"n": [{"numeric": ["<=", 5, ">", 1]}]}), json!({"n": 5}), true),
        case("numeric on string", json!({"n": [{"numeric": [">", 0]}]}), json!({"n": "5"}), false),
        case("numeric on boolean", json!({"n": [{"numeric": [">", 0]}]}), json!({"n": true}), false),
        case("numeric on missing", json!({"n": [{"numeric": [">", 0]}]}), json!({}), false),
        case("numeric on array", json!({"n": [{"numeric": [">", 10]}]}), json!({"n": [1, 20]}), true),
        case("numeric on array none", json!({"n": [{"numeric": [">", 10]}]}), json!({"n": [1, 2]}), false),
        case("numeric u64 max", json!({"n": [{"numeric": [">", 0]}]}), json!({"n": u64::MAX}), true),
        case("numeric float bound", json!({"n": [{"numeric": [">", 1.5]}]}), json!({"n": 2}), true),
        // exists.
        case("exists true", json!({"a": [{"exists": true}]}), json!({"a": "x"}), true),
        case("exists true on null", json!({"a": [{"exists": true}]}), json!({"a": null}), true),
        case("exists true on empty array", json!({"a": [{"exists": true}]}), json!({"a": []}), true),
        case("exists true on object", json!({"a": [{"exists": true}]}), json!({"a": {}}), true),
        case("exists true on missing", json!({"a": [{"exists": true}]}), json!({}), false),
        case("exists false on missing", json!({"a": [{"exists": false}]}), json!({}), true),
        case("exists false on present", json!({"a": [{"exists": false}]}), json!({"a": false}), false),
        case("exists false on null", json!({"a": [{"exists": false}]}), json!({"a": null}), false),
        case("exists false under missing parent", json!({"a": {"b": [{"exists": false}]}}), json!({}), true),
        case("exists false under string parent", json!({"a": {"b": [{"exists": false}]}}), json!({"a": "x"}), true),
        case("exists false under array without objects", json!({"a": {"b": [{"exists": false}]}}), json!({"a": [1, 2]}), true),
        case("exists false under objects", json!({"a": {"b": [{"exists": false}]}}), json!({"a": [{"b": 1}, {"c": 1}]}), true),
        case("exists false under objects all have it", json!({"a": {"b": [{"exists": false}]}}), json!({"a": [{"b": 1}, {"b": 2}]}), false),
        case("exists true under objects", json!({"a": {"b": [{"exists": true}]}}), json!({"a": [{"c": 1}, {"b": 1}]}), true),
        case("exists with value", json!({"a": [{"exists": false}, "x"]}), json!({"a": "x"}), true),
        case("exists with value other", json!({"a": [{"exists": false}, "x"]}), json!({"a": "y"}), false),
        // wildcard.
        case("wildcard middle", json!({"p": [{"wildcard": "services/*/deploy.yaml"}]}), json!({"p": "services/billing/deploy.yaml"}), true),
        case("wildcard crosses slashes", json!({"p": [{"wildcard": "services/*/deploy.yaml"}]}), json!({"p": "services/a/b/deploy.yaml"}), true),
        case("wildcard differs", json!({"p": [{"wildcard": "services/*/deploy.yaml"}]}), json!({"p": "services/a/config.yaml"}), false),
        case("wildcard empty run", json!({"p": [{"wildcard": "a*b"}]}), json!({"p": "ab"}), true),
        case("wildcard without star", json!({"p": [{"wildcard": "abc"}]}), json!({"p": "abc"}), true),
        case("wildcard without star longer", json!({"p": [{"wildcard": "abc"}]}), json!({"p": "abcd"}), false),
        case("wildcard star only", json!({"p": [{"wildcard": "*"}]}), json!({"p": ""}), true),
        case("wildcard parts in order", json!({"p": [{"wildcard": "*a*b*"}]}), json!({"p": "xbxax"}), false),
        case("wildcard parts do not overlap", json!({"p": [{"wildcard": "ab*ba"}]}), json!({"p": "aba"}), false),
        case("wildcard five stars", json!({"p": [{"wildcard": "*a*b*c*d*"}]}), json!({"p": "1a2b3c4d5"}), true),
        case("wildcard escaped star", json!({"p": [{"wildcard": "v1\\*"}]}), json!({"p": "v1*"}), true),
        case("wildcard escaped star is literal", json!({"p": [{"wildcard": "v1\\*"}]}), json!({"p": "v1.0"}), false),
        case("wildcard escaped backslash", json!({"p": [{"wildcard": "a\\\\*"}]}), json!({"p": "a\\b"}), true),
        case("wildcard on number", json!({"p": [{"wildcard": "*"}]}), json!({"p": 1}), false),
        case("wildcard on array", json!({"p": [{"wildcard": "*.rs"}]}), json!({"p": ["a.md", "b.rs"]}), true),
        // cidr.
        case("cidr v4 inside", json!({"ip": [{"cidr": "10.0.0.0/8"}]}), json!({"ip": "10.20.30.40"}), true),
        case("cidr v4 outside", json!({"ip": [{"cidr": "10.0.0.0/8"}]}), json!({"ip": "11.0.0.1"}), false),
        case("cidr v4 host bits ignored", json!({"ip": [{"cidr": "192.168.1.77/24"}]}), json!({"ip": "192.168.1.1"}), true),
        case("cidr v4 single host", json!({"ip": [{"cidr": "192.168.1.1/32"}]}), json!({"ip": "192.168.1.2"}), false),
        case("cidr v6 inside", json!({"ip": [{"cidr": "2001:db8::/32"}]}), json!({"ip": "2001:db8:ffff::1"}), true),
        case("cidr v6 outside", json!({"ip": [{"cidr": "2001:db8::/32"}]}), json!({"ip": "2001:db9::1"}), false),
        case("cidr v4 network, v6 address", json!({"ip": [{"cidr": "0.0.0.0/0"}]}), json!({"ip": "::1"}), false),
        case("cidr not an address", json!({"ip": [{"cidr": "10.0.0.0/8"}]}), json!({"ip": "10.0.0"}), false),
        case("cidr address with port", json!({"ip": [{"cidr": "10.0.0.0/8"}]}), json!({"ip": "10.0.0.1:80"}), false),
        case("cidr on number", json!({"ip": [{"cidr": "10.0.0.0/8"}]}), json!({"ip": 167772161}), false),
        // $or.
        case("$or first", json!({"$or": [{"a": "x"}, {"b": "y"}]}), json!({"a": "x"}), true),
        case("$or second", json!({"$or": [{"a": "x"}, {"b": "y"}]}), json!({"b": "y"}), true),
        case("$or none", json!({"$or": [{"a": "x"}, {"b": "y"}]}), json!({"a": "y", "b": "x"}), false),
        case("$or with other field", json!({"c": "z", "$or": [{"a": "x"}, {"b": "y"}]}), json!({"c": "z", "b": "y"}), true),
        case("$or with other field failing", json!({"c": "z", "$or": [{"a": "x"}, {"b": "y"}]}), json!({"c": "w", "b": "y"}), false),
        case("$or in nested object", json!({"d": {"$or": [{"a": "x"}, {"b": [{"numeric": [">", 5]}]}]}}), json!({"d": {"b": 6}}), true),
        case("$or in nested object none", json!({"d": {"$or": [{"a": "x"}, {"b": [{"numeric": [">", 5]}]}]}}), json!({"d": {"b": 5}}), false),
        case("$or inside $or", json!({"$or": [{"a": "x"}, {"$or": [{"b": "y"}, {"c": "z"}]}]}), json!({"c": "z"}), true),
        case("$or alternatives with operators", json!({"$or": [{"t": [{"prefix": "v"}]}, {"b": [{"exists": false}]}]}), json!({"b": 1, "t": "1.0"}), false),
        case("$or exists false alternative", json!({"$or": [{"t": [{"prefix": "v"}]}, {"b": [{"exists": false}]}]}), json!({}), true),
        case("$or over array of objects", json!({"d": {"$or": [{"a": "x"}, {"b": "y"}]}}), json!({"d": [{"a": "w"}, {"b": "y"}]}), true),
        // Unicode.
        case("unicode equal", json!({"a": ["héllo 世界 🎉"]}), json!({"a": "héllo 世界 🎉"}), true),
        case("unicode not normalized", json!({"a": ["\u{e9}"]}), json!({"a": "e\u{301}"}), false),
        case("unicode field name", json!({"名前": "x"}), json!({"名前": "x"}), true),
        case("unicode prefix", json!({"a": [{"prefix": "日本"}]}), json!({"a": "日本語"}), true),
        case("unicode suffix", json!({"a": [{"suffix": "🎉"}]}), json!({"a": "party 🎉"}), true),
        case("unicode ignore case", json!({"a": [{"equals-ignore-case": "ÉCOLE"}]}), json!({"a": "école"}), true),
        case("unicode ignore case is not folding", json!({"a": [{"equals-ignore-case": "STRASSE"}]}), json!({"a": "straße"}), false),
        case("unicode greek ignore case", json!({"a": [{"equals-ignore-case": "ΣΟΦΙΑ"}]}), json!({"a": "σοφια"}), true),
        case("unicode wildcard", json!({"a": [{"wildcard": "日*語"}]}), json!({"a": "日本語"}), true),
        case("unicode anything-but", json!({"a": [{"anything-but": "ü"}]}), json!({"a": "u"}), true),
        case("escaped characters", json!({"a": ["line\nbreak \"quoted\""]}), json!({"a": "line\nbreak \"quoted\""}), true),
        // Deep nesting.
        case("deep pattern at limit", nested(MAX_DEPTH, json!(["x"])), nested(MAX_DEPTH, json!("x")), true),
        case("deep pattern at limit differs", nested(MAX_DEPTH, json!(["x"])), nested(MAX_DEPTH, json!("y")), false),
        case("deep pattern, shallow event", nested(MAX_DEPTH, json!(["x"])), nested(MAX_DEPTH - 1, json!("x")), false),
        case("deep pattern, exists false, shallow event", nested(MAX_DEPTH, json!([{"exists": false}])), nested(3, json!("x")), true),
        case("shallow pattern, deep event", json!({"a": {"a": [{"exists": true}]}}), nested(500, json!("x")), true),
        case("deep event, value far below", nested(3, json!(["x"])), nested(500, json!("x")), false),
        case("deep arrays flattened", json!({"a": ["x"]}), json!({"a": deep_array(200, json!("x"))}), true),
        case("deep arrays flattened none", json!({"a": ["y"]}), json!({"a": deep_array(200, json!("x"))}), false),
        // GitHub shaped patterns.
        case("github push to main", json!({"repository": {"full_name": ["org/repo-1"]}, "ref": ["refs/heads/main", "refs/heads/master"]}), json!({"repository": {"full_name": "org/repo-1", "private": false}, "ref": "refs/heads/master"}), true),
        case("github push other repo", json!({"repository": {"full_name": ["org/repo-1"]}, "ref": ["refs/heads/main"]}), json!({"repository": {"full_name": "org/repo-10"}, "ref": "refs/heads/main"}), false),
        case("github comment command", json!({"action": ["created"], "comment": {"body": [{"prefix": "/deploy"}]}}), json!({"action": "created", "comment": {"body": "/deploy staging"}}), true),
        case("github comment other text", json!({"action": ["created"], "comment": {"body": [{"prefix": "/deploy"}]}}), json!({"action": "created", "comment": {"body": "LGTM /deploy"}}), false),
        case("github installation id", json!({"installation": {"id": [{"numeric": [">", 0]}]}}), json!({"installation": {"id": 2311213, "node_id": "x"}}), true),
    ]
}

/// Builds `{"a": {"a": ... leaf}}` with `levels` objects.
fn nested(levels: usize, leaf: Value) -> Value {
    let mut value = leaf;
    for _ in 0..levels {
        let mut object = Map::new();
        object.insert("a".to_owned(), value);
        value = Value::Object(object);
    }
    value
}

/// Builds `[[...[leaf]...]]` with `levels` arrays.
fn deep_array(levels: usize, leaf: Value) -> Value {
    let mut value = leaf;
    for _ in 0..levels {
        value = Value::Array(vec![value]);
    }
    value
}

fn compile(case: &Case) -> Pattern {
    match Pattern::compile(&case.pattern) {
        Ok(pattern) => pattern,
        Err(error) => panic!(
            "{}: pattern {} is invalid: {error}",
            case.name, case.pattern
        ),
    }
}

#[test]
fn table_has_enough_cases() {
    let cases = cases();
    assert!(cases.len() >= 150, "{} cases", cases.len());
    let matching = cases.iter().filter(|case| case.expected).count();
    assert!(matching >= 50, "{matching} matching cases");
    assert!(
        cases.len() - matching >= 50,
        "{} non-matching cases",
        cases.len() - matching
    );
}

#[test]
fn table_names_are_unique() {
    let cases = cases();
    let mut names: Vec<&str> = cases.iter().map(|case| case.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "duplicate case names");
}

#[test]
fn pattern_matches_as_expected() {
    let mut failures = Vec::new();
    for case in cases() {
        if compile(&case).matches(&case.event) != case.expected {
            failures.push(format!(
                "{}: pattern {} on {} should {}match",
                case.name,
                case.pattern,
                abbreviated(&case.event),
                if case.expected { "" } else { "not " }
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn explain_agrees_with_matches() {
    let mut failures = Vec::new();
    for case in cases() {
        match (compile(&case).explain(&case.event), case.expected) {
            (Ok(()), false) => failures.push(format!("{}: explain found no mismatch", case.name)),
            (Err(mismatch), true) => {
                failures.push(format!("{}: explain reports {mismatch}", case.name));
            }
            (Err(mismatch), false) if !mismatch.path.starts_with('$') => {
                failures.push(format!("{}: mismatch path {:?}", case.name, mismatch.path));
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn engine_agrees_with_scan() {
    // One engine contains every pattern of the table, so each event is also
    // tested against some 200 patterns written for other events.
    let cases = cases();
    let patterns: Vec<Arc<Pattern>> = cases.iter().map(|case| Arc::new(compile(case))).collect();
    let engine = MatchEngine::new(patterns.clone());
    let stats = engine.stats();
    assert!(stats.scanned < stats.entries, "no pattern is indexed");

    let mut failures = Vec::new();
    for case in &cases {
        let found: Vec<usize> = engine
            .matching(&case.event)
            .into_iter()
            .map(|pattern| {
                patterns
                    .iter()
                    .position(|candidate| std::ptr::eq(&**candidate, pattern))
                    .unwrap_or(usize::MAX)
            })
            .collect();
        let expected: Vec<usize> = (0..patterns.len())
            .filter(|position| patterns[*position].matches(&case.event))
            .collect();
        if found != expected {
            failures.push(format!(
                "{}: engine found {found:?}, a scan finds {expected:?}",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn projected_events_match_like_whole_ones() {
    // Each event is projected on the fields of its own pattern, and on
    // those of every pattern of the table, as for a source with them all.
    let cases = cases();
    let mut all_fields = FieldSet::default();
    for case in &cases {
        compile(case).add_fields_to(&mut all_fields);
    }

    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        let pattern = compile(case);
        let mut own_fields = FieldSet::default();
        pattern.add_fields_to(&mut own_fields);
        let text = case.event.to_string();
        // Events nested deeper than serde_json parses (128 levels) cannot
        // arrive as records.
        if serde_json::from_str::<Value>(&text).is_err() {
            continue;
        }
        checked += 1;
        for (fields, label) in [(&own_fields, "own fields"), (&all_fields, "all fields")] {
            match projection::parse(text.as_bytes(), fields) {
                Ok(projected) if pattern.matches(&projected) != case.expected => {
                    failures.push(format!(
                        "{}: projected on {label} to {}, the result differs",
                        case.name,
                        abbreviated(&projected)
                    ));
                }
                Ok(_) => {}
                Err(error) => failures.push(format!("{}: {label}: {error}", case.name)),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 150, "only {checked} cases checked");
}

/// Each limit with a pattern at it, which compiles, and one beyond it,
/// which is rejected with a message that names the limit.
#[test]
fn limits_reject_costly_patterns() {
    let values = |count: usize| -> Value { (0..count).map(|n| json!(format!("v{n}"))).collect() };
    let alternatives = |count: usize| -> Value {
        (0..count)
            .map(|n| json!({ "a": format!("v{n}") }))
            .collect()
    };

    let at_limit = [
        json!({ "a": values(MAX_CONDITIONS) }),
        json!({ "$or": alternatives(MAX_OR_ALTERNATIVES) }),
        nested(MAX_DEPTH, json!("x")),
        json!({ "a": [{ "wildcard": "*a*b*c*d*" }] }),
    ];
    for pattern in &at_limit {
        assert!(
            Pattern::compile(pattern).is_ok(),
            "{}",
            abbreviated(pattern)
        );
    }

    let beyond = [
        (
            json!({ "a": values(MAX_CONDITIONS + 1) }),
            "more than 1000 conditions",
        ),
        (
            json!({ "$or": alternatives(MAX_OR_ALTERNATIVES + 1) }),
            "more than 100 $or alternatives",
        ),
        (nested(MAX_DEPTH + 1, json!("x")), "deeper than 32 levels"),
        (
            json!({ "a": [{ "wildcard": "*a*b*c*d*e*" }] }),
            "at most 5 are allowed",
        ),
    ];
    for (pattern, fragment) in &beyond {
        match Pattern::compile(pattern) {
            Ok(_) => panic!("pattern {} compiles", abbreviated(pattern)),
            Err(error) => assert!(error.message.contains(fragment), "{error}"),
        }
    }
}

#[test]
fn guide_states_cost_limits() {
    let guide_path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/filters.md");
    let guide = std::fs::read_to_string(guide_path)
        .unwrap_or_else(|error| panic!("cannot read {guide_path}: {error}"));
    let conditions = format!("A pattern contains at most {MAX_CONDITIONS} conditions");
    assert!(guide.contains(&conditions), "guide lacks {conditions:?}");
    let alternatives = format!("A pattern lists at most {MAX_OR_ALTERNATIVES} `$or` alternatives");
    assert!(
        guide.contains(&alternatives),
        "guide lacks {alternatives:?}"
    );
}

fn abbreviated(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
