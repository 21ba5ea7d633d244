//! Input roots: a queued task may only read regular files beneath a configured directory, and
//! the file is opened exactly once — the open descriptor (not the name) is what the PDF worker
//! and the image reader get, so a symlink swapped in after the check cannot redirect the read.
//! Does not decide sizes (the domain crates cap what they read).
//!
//! Resolution is `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` from the root's directory
//! descriptor (the kernel refuses `..`, absolute symlinks and symlinks that leave the root); on
//! kernels without `openat2` a per-component walk with `O_NOFOLLOW` refuses every symlink.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// The setting named in "no input roots" errors.
pub const SETTING: &str = "`input_roots` in the config file or HLBOT_INPUT_ROOTS";

/// One allowed directory: as configured and as resolved (a path may name either).
#[derive(Debug, Clone)]
struct Root {
    given: PathBuf,
    real: PathBuf,
}

/// The directories tasks may read from. Empty `configured` means fail-closed: only hlbot's own
/// cache folder (files it wrote, e.g. video frames) is readable.
#[derive(Debug, Clone, Default)]
pub struct InputRoots {
    roots: Vec<Root>,
    /// Whether any root besides the cache folder was configured.
    configured: bool,
}

/// A file opened beneath a root: the only handle a task reads from.
#[derive(Debug)]
pub struct InputFile {
    pub file: File,
    /// The path as the task named it (for messages and results).
    pub path: PathBuf,
    pub len: u64,
}

impl InputRoots {
    /// Configured roots. Missing ones are kept as given (they match nothing that opens).
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut r = Self::default();
        for root in roots {
            r = r.with(&root);
        }
        r
    }

    /// hlbot's own folder (the cache): readable even with no roots configured.
    pub fn with_internal(mut self, root: &Path) -> Self {
        let configured = self.configured;
        self = self.with(root);
        self.configured = configured;
        self
    }

    /// Add a root (e.g. the folder of a file the user named on the command line).
    pub fn with(mut self, root: &Path) -> Self {
        let given = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let real = root.canonicalize().unwrap_or_else(|_| given.clone());
        self.roots.push(Root { given, real });
        self.configured = true;
        self
    }

    pub fn roots(&self) -> Vec<&Path> {
        self.roots.iter().map(|r| r.real.as_path()).collect()
    }

    /// Opens `path` for reading if it names a regular file beneath a root. Outside the roots the
    /// error is the same whether or not the path exists.
    pub fn open(&self, path: &Path) -> Result<InputFile> {
        let abs = std::path::absolute(path).map_err(|_| self.refused(path))?;
        // Lexical match first, then the resolved parent (a root reached through a symlinked
        // prefix); either way the open itself happens beneath the root's descriptor.
        let resolved = abs
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .zip(abs.file_name())
            .map(|(p, n)| p.join(n));
        let mut candidates = Vec::new();
        for root in &self.roots {
            for base in [&root.given, &root.real] {
                for p in std::iter::once(&abs).chain(resolved.as_ref()) {
                    if let Ok(rel) = p.strip_prefix(base) {
                        candidates.push((root, rel.to_path_buf()));
                    }
                }
            }
        }
        if candidates.is_empty() {
            return Err(self.refused(path));
        }
        let mut last = None;
        for (root, rel) in candidates {
            match open_beneath(&root.real, &rel) {
                Ok(fd) => return finish(File::from(fd), path),
                Err(e) => last = Some(e),
            }
        }
        let not_allowed = |why: &str| Error::NotAllowed {
            path: path.to_path_buf(),
            why: why.into(),
        };
        // Beneath a root the kernel's answer may be told; leaving one always reads the same.
        Err(match last {
            Some(Errno::NOENT) | Some(Errno::NOTDIR) => Error::InputMissing {
                hint: String::new(),
                path: path.to_path_buf(),
            },
            Some(Errno::ACCESS) => not_allowed("permission denied"),
            Some(e @ (Errno::NAMETOOLONG | Errno::NOMEM | Errno::MFILE | Errno::NFILE)) => {
                not_allowed(&format!("it cannot be opened ({e})"))
            }
            _ => not_allowed("it leaves the allowed input roots"),
        })
    }

    fn refused(&self, path: &Path) -> Error {
        if !self.configured {
            return Error::NoInputRoots {
                path: path.to_path_buf(),
            };
        }
        Error::NotAllowed {
            path: path.to_path_buf(),
            why: "it is outside the allowed input roots".into(),
        }
    }
}

impl InputFile {
    /// The whole file, refused with `TooLarge` (naming `setting`) if it is over `limit` bytes
    /// (0 = no limit); never reads more than the limit.
    pub fn read_capped(&self, limit: u64, setting: &str) -> Result<Vec<u8>> {
        use std::io::Read;
        let too_large = |n: u64| {
            Error::TooLarge(format!(
                "{} is {n} bytes; the limit is {limit} ({setting})",
                self.path.display()
            ))
        };
        if limit > 0 && self.len > limit {
            return Err(too_large(self.len));
        }
        let cap = if limit > 0 { limit + 1 } else { u64::MAX };
        let mut out = Vec::with_capacity(self.len.min(cap) as usize);
        (&self.file)
            .take(cap)
            .read_to_end(&mut out)
            .map_err(|e| Error::Other(format!("reading {}: {}", self.path.display(), e.kind())))?;
        if limit > 0 && out.len() as u64 > limit {
            return Err(too_large(out.len() as u64));
        }
        Ok(out)
    }
}

/// Regular files only (no devices, FIFOs, sockets, directories).
fn finish(file: File, path: &Path) -> Result<InputFile> {
    let meta = file.metadata().map_err(|_| Error::NotAllowed {
        path: path.to_path_buf(),
        why: "it cannot be inspected".into(),
    })?;
    if !meta.file_type().is_file() {
        return Err(Error::NotAllowed {
            path: path.to_path_buf(),
            why: "it is not a regular file".into(),
        });
    }
    Ok(InputFile {
        file,
        path: path.to_path_buf(),
        len: meta.len(),
    })
}

/// Opens `rel` beneath `root` without leaving it. `O_NONBLOCK` so a FIFO does not block the
/// open (it is refused right after as not a regular file).
fn open_beneath(root: &Path, rel: &Path) -> std::result::Result<OwnedFd, Errno> {
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let flags = OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    match rustix::fs::openat2(
        &dir,
        rel,
        flags,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    ) {
        Err(Errno::NOSYS) | Err(Errno::PERM) => walk_nofollow(dir, rel, flags),
        other => other,
    }
}

/// The fallback for kernels (or seccomp filters) without `openat2`: one component at a time,
/// never following a symlink and never going up.
fn walk_nofollow(
    mut dir: OwnedFd,
    rel: &Path,
    flags: OFlags,
) -> std::result::Result<OwnedFd, Errno> {
    let parts: Vec<_> = rel.components().collect();
    for (i, c) in parts.iter().enumerate() {
        let name = match c {
            Component::Normal(n) => *n,
            Component::CurDir => continue,
            _ => return Err(Errno::XDEV),
        };
        let last = i + 1 == parts.len();
        let f = if last {
            flags | OFlags::NOFOLLOW
        } else {
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
        };
        dir = rustix::fs::openat(&dir, name, f, Mode::empty()).map_err(|e| match e {
            Errno::LOOP => Errno::XDEV,
            e => e,
        })?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests;
