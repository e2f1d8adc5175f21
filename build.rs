//! Records the git commit of the build for results provenance (`trilemma::GIT_COMMIT`):
//! `git describe --always --dirty`, or `unknown` outside a git checkout or without git.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TRILEMMA_GIT_COMMIT={commit}");
    // Rerun when HEAD moves (commit, checkout) or the sources change (the dirty flag); not on
    // `.git/index`, which `git status` rewrites without any change to the code.
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs", "src", "shaders", "Cargo.toml", "build.rs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
