//! Checks the relative links of the Markdown files: the file (or folder)
//! must exist and a `#fragment` must name a heading of the target, slugged
//! as GitHub and GitLab do.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Folders never checked: build output and other repositories' files.
const SKIP: &[&str] = &[".git", "target", "build", "build-target", "node_modules"];

pub fn run(root: &Path) -> Result<(), String> {
    let mut files = Vec::new();
    markdown_files(root, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut links = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        for (line, target) in relative_links(&text) {
            links += 1;
            if let Err(why) = check_link(file, target) {
                let shown = file.strip_prefix(root).unwrap_or(file).display();
                problems.push(format!("{shown}:{line}: {target}: {why}"));
            }
        }
    }
    if problems.is_empty() {
        println!(
            "{links} relative links in {} Markdown files: all valid",
            files.len()
        );
        Ok(())
    } else {
        Err(format!(
            "{} broken links:\n{}",
            problems.len(),
            problems.join("\n")
        ))
    }
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !SKIP.contains(&name.as_ref()) && !name.starts_with(".gpu-stage") {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// `(line, target)` of every inline link outside code that is not a URL.
fn relative_links(text: &str) -> Vec<(usize, &str)> {
    let mut links = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
                // Re-find the target in the original line to borrow from `text`.
                if let Some(pos) = text.lines().nth(i).and_then(|l| l.find(target)) {
                    let original = &text.lines().nth(i).unwrap()[pos..pos + target.len()];
                    links.push((i + 1, original));
                }
            }
            rest = &after[end..];
        }
    }
    links
}

/// The line with inline code spans blanked out: `[x](y)` inside backticks is
/// an example, not a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(c);
        } else if in_code {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

fn check_link(file: &Path, target: &str) -> Result<(), String> {
    let (path, fragment) = match target.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (target, None),
    };
    let resolved = if path.is_empty() {
        file.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(path)
    };
    if !resolved.exists() {
        return Err("no such file".into());
    }
    if let Some(fragment) = fragment {
        if resolved.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&resolved).map_err(|e| e.to_string())?;
            if !anchors(&text).contains(fragment) {
                return Err(format!("no heading #{fragment} in {}", resolved.display()));
            }
        }
    }
    Ok(())
}

/// The anchors headings get on GitHub: lower case, punctuation dropped,
/// spaces as hyphens, `-1`, `-2`... for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let base = slug(title);
        let mut anchor = base.clone();
        let mut n = 1;
        while seen.contains(&anchor) {
            anchor = format!("{base}-{n}");
            n += 1;
        }
        seen.insert(anchor);
    }
    seen
}

fn slug(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_as_github() {
        assert_eq!(slug("Two GPUs"), "two-gpus");
        assert_eq!(slug("`trtinfer` (ONNX Runtime)"), "trtinfer-onnx-runtime");
        assert_eq!(
            slug("Status & tested platforms"),
            "status--tested-platforms"
        );
        let a = anchors("# A\n## A\n```\n# not a heading\n```\n");
        assert!(a.contains("a") && a.contains("a-1") && !a.contains("not-a-heading"));
    }

    #[test]
    fn finds_links_outside_code() {
        let text =
            "see [x](docs/x.md#y) and `[z](no.md)`\n```\n[w](no.md)\n```\n[u](https://e.org)";
        assert_eq!(relative_links(text), vec![(1, "docs/x.md#y")]);
    }
}
