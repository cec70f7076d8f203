//! Records the git commit this binary is built from (`SYNAPTOGEN_COMMIT`), so the processes of a
//! search shared through a database can check they all run the same code (`src/search/storage/`):
//! results depend on it. Built outside a git checkout, the version alone is used.

use std::path::Path;
use std::process::Command;

fn main() {
    let git = Path::new(".git");
    // Rebuild when HEAD moves: HEAD itself, the branch file it names, and the packed refs.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/packed-refs");
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
        && let Some(branch) = head.trim().strip_prefix("ref: ")
    {
        println!("cargo:rerun-if-changed=.git/{branch}");
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=SYNAPTOGEN_COMMIT={commit}");
}
