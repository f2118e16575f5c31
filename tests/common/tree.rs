//! Deterministic test trees and ways to compare them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Shape of a tree for [`make_tree`]: `depth` levels of `dirs_per_dir` folders, each folder
/// (the root included) holding `files_per_dir` files whose sizes cycle through `sizes`.
#[derive(Clone, Debug)]
pub struct TreeSpec {
    /// Folder levels below the root (0: files in the root only).
    pub depth: usize,
    /// Sub-folders per folder.
    pub dirs_per_dir: usize,
    /// Files per folder.
    pub files_per_dir: usize,
    /// File sizes in bytes, used in turn.
    pub sizes: Vec<u64>,
    /// Seed of the content generator.
    pub seed: u64,
}

impl Default for TreeSpec {
    /// Two levels of 2 folders, 3 files each of 0, 1000 and 100 000 bytes.
    fn default() -> Self {
        TreeSpec {
            depth: 2,
            dirs_per_dir: 2,
            files_per_dir: 3,
            sizes: vec![0, 1000, 100_000],
            seed: 1,
        }
    }
}

/// Writes the tree described by `spec` under `root` (created if needed): folders are named
/// `dir N`, files `file N.bin` (the spaces are deliberate). Returns the files' relative
/// paths in creation order. Content is deterministic per (seed, relative path).
pub fn make_tree(root: &Path, spec: &TreeSpec) -> Vec<PathBuf> {
    std::fs::create_dir_all(root).expect("cannot create the tree root");
    let mut files = Vec::new();
    let mut counter = 0usize;
    fill(
        root,
        Path::new(""),
        spec,
        spec.depth,
        &mut counter,
        &mut files,
    );
    files
}

fn fill(
    root: &Path,
    rel: &Path,
    spec: &TreeSpec,
    depth_left: usize,
    counter: &mut usize,
    files: &mut Vec<PathBuf>,
) {
    let dir = root.join(rel);
    std::fs::create_dir_all(&dir).expect("cannot create a tree folder");
    for i in 0..spec.files_per_dir {
        let size = if spec.sizes.is_empty() {
            0
        } else {
            spec.sizes[*counter % spec.sizes.len()]
        };
        *counter += 1;
        let frel = rel.join(format!("file {i}.bin"));
        let seed = spec.seed ^ fnv1a(frel.to_string_lossy().as_bytes());
        std::fs::write(root.join(&frel), pseudo_random_bytes(seed, size as usize))
            .expect("cannot write a tree file");
        files.push(frel);
    }
    if depth_left > 0 {
        for d in 0..spec.dirs_per_dir {
            fill(
                root,
                &rel.join(format!("dir {d}")),
                spec,
                depth_left - 1,
                counter,
                files,
            );
        }
    }
}

/// FNV-1a hash, to derive per-file seeds.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `len` deterministic pseudo-random bytes from `seed` (xorshift64).
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    if x == 0 {
        x = 1;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Hex SHA-256 of a file's content (read in 1 MiB chunks).
pub fn sha256_file(path: &Path) -> String {
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

/// Hex SHA-256 of bytes.
pub fn sha256_bytes(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every entry below `root` (not `root` itself), keyed by its `/`-separated relative path:
/// (is_dir, size — 0 for folders, mtime in whole seconds). Symlinks are not followed.
pub fn walk(root: &Path) -> BTreeMap<String, (bool, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
            let erel = rel.join(entry.file_name());
            let meta = std::fs::symlink_metadata(root.join(&erel))
                .unwrap_or_else(|e| panic!("cannot stat {}: {e}", erel.display()));
            let key = erel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let is_dir = meta.is_dir();
            out.insert(
                key,
                (is_dir, if is_dir { 0 } else { meta.len() }, meta.mtime()),
            );
            if is_dir {
                stack.push(erel);
            }
        }
    }
    out
}

/// Every file below `root` (relative path → content), skipping Apache's `.DAV` folders.
pub fn file_contents(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(root)
        .into_iter()
        .filter(|(rel, (is_dir, _, _))| !is_dir && !rel.split('/').any(|p| p.starts_with(".DAV")))
        .map(|(rel, _)| {
            let data = std::fs::read(root.join(&rel)).unwrap_or_default();
            (rel, data)
        })
        .collect()
}
