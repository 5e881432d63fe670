//! Which manifest commands read when neither `-f` nor `SHIPIT_FILE` names one.
//!
//! `shipit.toml` in the current directory, else in the nearest directory above it, up to the
//! repository root (the first directory, going up, that holds `.git`, a directory or, in a
//! worktree or submodule, a file); never above it. Outside a git repository only the current
//! directory is looked in: a manifest in some unrelated directory above is never picked up.

use std::path::{Component, Path, PathBuf};

use crate::cli::{Cli, Command};

/// The manifest's file name.
pub const MANIFEST: &str = "shipit.toml";

/// Where the manifest was looked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Searched {
    /// The current directory, where the search started.
    pub start: PathBuf,
    /// The repository root, where it stopped; `None` outside a repository (only `start` was
    /// looked in).
    pub root: Option<PathBuf>,
}

impl Searched {
    /// `no shipit.toml in …`: what was searched, for the error when nothing was found.
    pub fn describe(&self) -> String {
        let start = self.start.display();
        match &self.root {
            Some(root) if root == &self.start => {
                format!("no {MANIFEST} in {start} (the root of its git repository)")
            }
            Some(root) => format!(
                "no {MANIFEST} in {start} or any directory above it up to the root of its git repository, {}",
                root.display()
            ),
            None => {
                format!("no {MANIFEST} in {start} (not in a git repository, so no directory above it was searched)")
            }
        }
    }
}

/// The manifest to read, searching from `start`, and where it searched. The path is `shipit.toml`
/// when it is in `start` itself or found nowhere (so messages name it as before), else relative
/// to `start` (`../../shipit.toml`).
pub fn find(start: &Path) -> (PathBuf, Searched) {
    let root = start.ancestors().find(|dir| dir.join(".git").exists()).map(Path::to_path_buf);
    let searched = Searched { start: start.to_path_buf(), root: root.clone() };
    let dirs: Vec<&Path> = match &root {
        Some(root) => start.ancestors().take_while(|dir| dir.starts_with(root)).collect(),
        None => vec![start],
    };
    for (up, dir) in dirs.iter().enumerate() {
        if dir.join(MANIFEST).is_file() {
            let path: PathBuf = std::iter::repeat_n(Component::ParentDir, up).collect();
            return (path.join(MANIFEST), searched);
        }
    }
    (PathBuf::from(MANIFEST), searched)
}

/// Sets [`Cli::file`]: `-f` or `SHIPIT_FILE` as given, else `shipit.toml` for `init` (which
/// writes it here), else the one [`find`] finds from the current directory.
pub fn choose(cli: &mut Cli) {
    if let Some(path) = &cli.file_arg {
        cli.file = path.clone();
        return;
    }
    cli.file = PathBuf::from(MANIFEST);
    if matches!(cli.command, Command::Init(_)) {
        return;
    }
    if let Ok(dir) = std::env::current_dir() {
        let (file, searched) = find(&dir);
        cli.file = file;
        cli.searched = Some(searched);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }

    #[test]
    fn the_nearest_manifest_up_to_the_repository_root_wins() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(root.join(".git")).unwrap();
        let deep = root.join("apps/api/src");
        std::fs::create_dir_all(&deep).unwrap();
        touch(&root.join(MANIFEST));
        let (path, searched) = find(&deep);
        assert_eq!(path, Path::new("../../../shipit.toml"));
        assert_eq!(searched.root.as_deref(), Some(root.as_path()));
        touch(&root.join("apps").join(MANIFEST));
        assert_eq!(find(&deep).0, Path::new("../../shipit.toml"));
        touch(&deep.join(MANIFEST));
        assert_eq!(find(&deep).0, Path::new(MANIFEST));
    }

    #[test]
    fn the_search_stops_at_the_repository_root() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join(MANIFEST));
        let root = dir.path().join("repo");
        // A worktree's or submodule's `.git` is a file.
        touch(&root.join(".git"));
        let sub = root.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        let (path, searched) = find(&sub);
        assert_eq!(path, Path::new(MANIFEST));
        assert!(!sub.join(path).exists());
        let message = searched.describe();
        assert!(message.contains("or any directory above it up to the root of its git repository"), "{message}");
        assert!(message.contains(&root.display().to_string()), "{message}");
        assert!(find(&root).1.describe().contains("(the root of its git repository)"));
    }

    #[test]
    fn outside_a_repository_only_the_current_directory_counts() {
        let dir = tempfile::tempdir().unwrap();
        if dir.path().ancestors().any(|d| d.join(".git").exists()) {
            return; // the temp directory is inside a repository here
        }
        touch(&dir.path().join(MANIFEST));
        let sub = dir.path().join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        let (path, searched) = find(&sub);
        assert_eq!(path, Path::new(MANIFEST));
        assert_eq!(searched.root, None);
        assert!(searched.describe().contains("not in a git repository"));
        assert_eq!(find(dir.path()).0, Path::new(MANIFEST));
    }
}
