//! Input roots: a queued task may only read files that resolve, after following symlinks,
//! inside a configured directory — so a message cannot make a worker read `/etc/passwd`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The directories tasks may read from.
#[derive(Debug, Clone, Default)]
pub struct InputRoots {
    roots: Vec<PathBuf>,
}

impl InputRoots {
    /// Roots that exist are canonicalized now; missing ones are kept as given (never match).
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> Self {
        let roots = roots
            .into_iter()
            .map(|r| r.canonicalize().unwrap_or(r))
            .collect();
        Self { roots }
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Add a root (e.g. the folder of a file the user named on the command line).
    pub fn with(mut self, root: &Path) -> Self {
        self.roots
            .push(root.canonicalize().unwrap_or_else(|_| root.to_path_buf()));
        self
    }

    /// The canonical path of `path` if it exists and lies inside a root; a clear error otherwise.
    pub fn check(&self, path: &Path) -> Result<PathBuf> {
        let real = path.canonicalize().map_err(|e| Error::InputMissing {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        if self.roots.iter().any(|r| real.starts_with(r)) {
            return Ok(real);
        }
        Err(Error::OutsideInputRoots {
            path: path.to_path_buf(),
            resolved: real,
            roots: self
                .roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_out_of_a_root_are_refused() {
        let root = tempfile::tempdir().expect("tmp");
        let inside = root.path().join("a.pdf");
        std::fs::write(&inside, b"%PDF-1.4").expect("write");
        let link = root.path().join("passwd");
        std::os::unix::fs::symlink("/etc/passwd", &link).expect("symlink");
        let roots = InputRoots::new([root.path().to_path_buf()]);
        assert!(roots.check(&inside).is_ok());
        let e = roots.check(&link).expect_err("must refuse");
        assert!(
            e.to_string().contains("outside the allowed input roots"),
            "{e}"
        );
        assert!(matches!(
            roots.check(Path::new("/etc/passwd")),
            Err(Error::OutsideInputRoots { .. })
        ));
        assert!(matches!(
            roots.check(&root.path().join("nope")),
            Err(Error::InputMissing { .. })
        ));
        let dotdot = root.path().join("..").join("..").join("etc").join("passwd");
        assert!(roots.check(&dotdot).is_err());
    }
}
