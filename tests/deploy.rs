//! Offline checks of the deployment files: the Kustomize manifests under
//! `deploy/`, `docker-compose.yml` and the `Dockerfile`.
//!
//! The manifest checks run `scripts/validate-deploy`, which needs kubectl,
//! kubernetes-validate and docker-compose (`scripts/install-deploy-tools`
//! installs them). Without them these tests print a `note: skipping` line
//! and pass, unless `EVENT_HUB_TEST_REQUIRE_DEPLOY_TOOLS=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Set to `1` to fail, rather than skip, when a deployment tool is missing.
const REQUIRE_TOOLS_ENV: &str = "EVENT_HUB_TEST_REQUIRE_DEPLOY_TOOLS";

/// Exit status of `scripts/validate-deploy` when a tool is missing.
const MISSING_TOOL_STATUS: i32 = 2;

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/validate-deploy` with `arguments`, or returns `None` when
/// a tool is missing and not required.
fn validate_deploy(arguments: &[&Path]) -> Option<Output> {
    let output = Command::new(repository().join("scripts/validate-deploy"))
        .args(arguments)
        .output()
        .expect("scripts/validate-deploy runs");
    if output.status.code() == Some(MISSING_TOOL_STATUS) {
        let reason = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if std::env::var(REQUIRE_TOOLS_ENV).as_deref() == Ok("1") {
            panic!("{reason}; install the tools or unset {REQUIRE_TOOLS_ENV}");
        }
        eprintln!("note: skipping deployment checks: {reason}");
        return None;
    }
    Some(output)
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Copies the directory tree `from` into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Copies `deploy/` to a temporary directory and returns the copy's base.
fn base_copy(directory: &tempfile::TempDir) -> PathBuf {
    let deploy = directory.path().join("deploy");
    copy_tree(&repository().join("deploy"), &deploy);
    deploy.join("base")
}

fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} contains {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

#[test]
fn manifests_and_compose_file_validate() {
    let Some(output) = validate_deploy(&[]) else {
        return;
    };
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("== kustomize deploy/overlays/example"),
        "{stdout}"
    );
    assert!(stdout.contains("deployment files are valid"), "{stdout}");
}

#[test]
fn short_grace_period_is_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let base = base_copy(&directory);
    replace_in(
        &base.join("deployment.yaml"),
        "terminationGracePeriodSeconds: 30",
        "terminationGracePeriodSeconds: 10",
    );
    let Some(output) = validate_deploy(&[&base]) else {
        return;
    };
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("terminationGracePeriodSeconds"), "{stderr}");
}

#[test]
fn unknown_manifest_field_is_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let base = base_copy(&directory);
    replace_in(
        &base.join("service.yaml"),
        "  type: ClusterIP\n",
        "  type: ClusterIP\n  clusterIPs-typo: none\n",
    );
    let Some(output) = validate_deploy(&[&base]) else {
        return;
    };
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("clusterIPs-typo"), "{stderr}");
}

#[test]
fn dockerfile_builds_locked_and_runs_unprivileged() {
    let dockerfile = std::fs::read_to_string(repository().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    assert!(lines.contains(&"FROM rust:1-bookworm AS builder"));
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(lines.contains(&"FROM debian:bookworm-slim"));
    assert!(
        lines.contains(&"USER 10001:10001"),
        "a numeric non-root user"
    );
    assert!(lines.contains(&"EXPOSE 8080"));
    assert!(lines.contains(&r#"ENTRYPOINT ["event-hub"]"#));
    assert!(lines.contains(&r#"CMD ["run"]"#));
    assert!(dockerfile.contains("EVENT_HUB__HTTP__LISTEN=0.0.0.0:8080"));

    let ignored = std::fs::read_to_string(repository().join(".dockerignore")).unwrap();
    assert!(ignored.lines().any(|line| line == "target/"));
}
