//! The project's tooling, run as `cargo xtask <command>`:
//!
//! - `docs`: writes `docs/elements/<element>.md` for every element of the
//!   plugin from what the element registers (metadata, pad templates,
//!   properties); `docs --check` fails when the committed files differ.
//! - `links`: checks every relative link and `#anchor` in the Markdown files.

mod docs;
mod links;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  docs [--check]   write docs/elements/*.md from the registered elements;
                   --check: fail if the committed files differ
  links            check the relative links and anchors of every *.md file
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let root = workspace_root();
    let result = match args.as_slice() {
        ["docs"] => docs::write(&root),
        ["docs", "--check"] => docs::check(&root),
        ["links"] => links::run(&root),
        ["-h" | "--help" | "help"] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown arguments {args:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The checkout's top folder: xtask's manifest lives one level below it.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is inside the workspace")
        .to_path_buf()
}
