//! Every dependency line in README.md and the guide names a package this workspace builds, with
//! the version it will have, or a crate the workspace itself depends on: a renamed or misspelt
//! package (the crates.io `cqrs-core` is another project's) fails here, not in a reader's build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The value of `key = "..."` on a TOML line, if there.
fn quoted(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!("{key} = \""))? + key.len() + 4;
    let rest = &line[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The workspace's packages (name and version) and the crates it depends on.
fn workspace() -> (BTreeMap<String, String>, Vec<String>) {
    let manifest = read(&root().join("Cargo.toml"));
    let version = manifest
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| quoted(l, "version"))
        .expect("the workspace's version");
    let members = manifest.lines().find(|l| l.starts_with("members = ")).expect("the workspace's members");
    let mut packages = BTreeMap::new();
    for member in members.split('"').skip(1).step_by(2) {
        let package = read(&root().join(member).join("Cargo.toml"));
        let name = package.lines().find_map(|l| quoted(l, "name")).expect("a package name");
        packages.insert(name, version.clone());
    }
    let external = manifest
        .lines()
        .skip_while(|l| l.trim() != "[workspace.dependencies]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once(" = ").map(|(name, _)| name.trim().to_owned()))
        .filter(|name| !name.starts_with('#') && !packages.contains_key(name))
        .collect();
    (packages, external)
}

/// Each dependency line of the TOML blocks of a Markdown file: (line number, name, line).
fn dependency_lines(markdown: &str) -> Vec<(usize, String, String)> {
    let mut found = Vec::new();
    let (mut in_toml, mut in_dependencies) = (false, false);
    for (number, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_toml = !in_toml && trimmed == "```toml";
            in_dependencies = false;
            continue;
        }
        if !in_toml || trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed.starts_with('[') {
            in_dependencies = trimmed.ends_with("dependencies]");
            continue;
        }
        if let (true, Some((name, _))) = (in_dependencies, trimmed.split_once('=')) {
            found.push((number + 1, name.trim().to_owned(), trimmed.to_owned()));
        }
    }
    found
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md"), root().join("docs/benchmarks.md")];
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(root().join("docs/src"))
        .expect("docs/src")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    chapters.sort();
    files.extend(chapters);
    files
}

#[test]
fn every_dependency_line_names_a_package_of_this_workspace() {
    let (packages, external) = workspace();
    let mut wrong = Vec::new();
    let mut ours = 0;
    for file in markdown_files() {
        for (number, name, line) in dependency_lines(&read(&file)) {
            let at = format!("{}:{number}", file.strip_prefix(root()).unwrap_or(&file).display());
            if let Some(version) = packages.get(&name) {
                ours += 1;
                // The version it will have on crates.io, and how to depend on it until then.
                match quoted(&line, "version") {
                    Some(asked) if version.starts_with(&asked) => {}
                    asked => {
                        wrong.push(format!("{at}: {name} asks for version {asked:?}, the workspace has {version}"))
                    }
                }
                if quoted(&line, "path").is_none() && quoted(&line, "git").is_none() {
                    wrong.push(format!("{at}: {name} is not published yet: give a `path` or `git` with the version"));
                }
            } else if !external.contains(&name) {
                wrong.push(format!("{at}: `{name}` is neither a package of this workspace nor one it depends on"));
            }
        }
    }
    assert!(wrong.is_empty(), "dependency lines to fix:\n{}", wrong.join("\n"));
    assert!(ours > 0, "no dependency line names a package of this workspace: is the parser still right?");
}

#[test]
fn the_parser_finds_lines_inside_toml_blocks_only() {
    let markdown = "```toml\n[dependencies]\n# a comment\neventloom = { version = \"0.1\", path = \"x\" }\n\
                    [package]\nname = \"x\"\n```\n\n```text\n[dependencies]\nnot-this = 1\n```\n";
    let lines = dependency_lines(markdown);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!((lines[0].0, lines[0].1.as_str()), (4, "eventloom"));
    assert_eq!(quoted(&lines[0].2, "version").as_deref(), Some("0.1"));
}
