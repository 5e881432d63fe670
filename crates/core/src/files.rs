//! Files that shipit renders, and how they are written or compared on disk.

use std::path::{Path, PathBuf};

/// One rendered file: a path relative to the output directory and its full text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RenderedFile {
    /// Path relative to the output directory, with `/` separators.
    pub path: String,
    /// The file's text.
    pub contents: String,
}

impl RenderedFile {
    /// A rendered file.
    pub fn new(path: impl Into<String>, contents: impl Into<String>) -> Self {
        Self { path: path.into(), contents: contents.into() }
    }
}

/// Why rendering failed: the manifest is valid but a platform cannot express something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{platform}: {message}")]
#[non_exhaustive]
pub struct RenderError {
    /// Which renderer refused.
    pub platform: &'static str,
    /// What cannot be rendered and what would work instead.
    pub message: String,
}

impl RenderError {
    /// A render error for `platform`.
    pub fn new(platform: &'static str, message: impl Into<String>) -> Self {
        Self { platform, message: message.into() }
    }
}

/// Writes files under `dir`, creating directories as needed.
pub fn write_all(dir: &Path, files: &[RenderedFile]) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for f in files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &f.contents)?;
        written.push(path);
    }
    Ok(written)
}

/// The files under `dir` whose contents differ from (or are missing for) the rendered ones.
pub fn drift(dir: &Path, files: &[RenderedFile]) -> Vec<String> {
    files
        .iter()
        .filter(|f| std::fs::read_to_string(dir.join(&f.path)).map_or(true, |on_disk| on_disk != f.contents))
        .map(|f| f.path.clone())
        .collect()
}
