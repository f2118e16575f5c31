//! The sample tree `edrive demo` serves: a few hundred files of varied sizes (0 bytes to
//! 5 MiB, readable text and binary) in nested folders whose names have spaces and non-ASCII
//! characters. Everything is deterministic: the same call writes the same bytes and mtimes.
//!
//! Standard library only, so tests can include this file with `#[path]`.

use std::fs::{self, File, FileTimes};
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// 1 MiB.
const MIB: usize = 1 << 20;
/// 1 KiB.
const KIB: usize = 1 << 10;
/// Base mtime of the generated files: 2024-01-01T00:00:00Z.
const BASE_MTIME: u64 = 1_704_067_200;

/// Text of the top-level README.txt.
const README: &str = "\
edrive demo
===========

This folder is a WebDAV share served by `edrive serve` and mounted by `edrive mount`.
Nothing below was downloaded when you listed it: folder listings come from WebDAV
PROPFIND, and a file's content is fetched only when a program opens and reads it.
Once read, content is cached locally, so reading it again costs no network traffic.

Things to try:
  ls -lR                      # browse: sizes and dates without downloading content
  cat \"Documents/Letters/Letter 01 to Ana.txt\"
  sha256sum \"Archive/big file 5MiB.bin\"   # a 5 MiB download, then cached
  edrive status <mountpoint>  # cache usage and counters

The tree is generated deterministically: text files contain readable sample prose,
binary files contain pseudo-random bytes behind a real-looking header (JPEG, PNG, ...),
and names deliberately include spaces and non-ASCII characters (Café, 日本語).
";

/// Words the text files are made of.
const WORDS: &[&str] = &[
    "the", "drive", "folder", "remote", "file", "content", "arrives", "when", "needed", "cache",
    "keeps", "what", "was", "read", "listing", "is", "cheap", "bytes", "travel", "only", "on",
    "demand", "a", "quiet", "morning", "report", "summary", "budget", "plan", "meeting", "notes",
    "and", "of", "to", "with", "for", "every", "small", "large", "server", "client", "mount",
    "offline", "sync", "draft", "final", "review", "project", "garden", "coffee", "train",
    "letter", "river", "window", "yellow", "seven", "quickly",
];

/// Writes the demo tree under `root` (created if missing; existing files are overwritten)
/// and returns the number of files written.
pub fn generate_demo_tree(root: &Path) -> io::Result<usize> {
    let mut g = Gen {
        root,
        count: 0,
        rng: XorShift::new(0xED21_7E00_D3A0),
    };
    fs::create_dir_all(root)?;
    g.file("README.txt", README.as_bytes())?;

    // Documents: text of many sizes, nested three levels deep.
    for year in [2023, 2024] {
        for month in 1..=12 {
            let name = format!("Documents/Reports/{year}/Report {year}-{month:02}.txt");
            g.text(&name, 2 * KIB, 40 * KIB)?;
        }
    }
    for i in 1..=20 {
        g.text(
            &format!("Documents/Letters/Letter {i:02} to Ana.txt"),
            KIB,
            8 * KIB,
        )?;
    }
    for (i, dish) in [
        "crème brûlée",
        "soupe à l'oignon",
        "café au lait",
        "crêpes",
        "bœuf bourguignon",
    ]
    .iter()
    .enumerate()
    {
        for v in 1..=3 {
            let name = format!("Documents/Notes/Café/Recette {:02} {dish} v{v}.txt", i + 1);
            g.text(&name, 512, 6 * KIB)?;
        }
    }
    for i in 0..60 {
        g.text(&format!("Documents/Misc/note {i:03}.txt"), 0, 4 * KIB)?;
    }
    g.file("Documents/Empty.txt", b"")?;

    // Photos: binary files with image headers.
    for i in 1..=40 {
        g.binary(
            &format!("Photos/Vacation 2023/IMG_{:04}.jpg", 1000 + i),
            JPEG,
            50 * KIB,
            600 * KIB,
        )?;
    }
    for i in 1..=20 {
        g.binary(
            &format!("Photos/日本語/東京/写真 {i:02}.png"),
            PNG,
            20 * KIB,
            300 * KIB,
        )?;
    }
    for i in 1..=25 {
        g.binary(
            &format!("Photos/Family/Birthday party/DSC {i:03}.jpg"),
            JPEG,
            30 * KIB,
            400 * KIB,
        )?;
    }

    // Music: a few mid-size binaries and small playlists.
    for i in 1..=12 {
        g.binary(
            &format!("Music/Album One/Disc 1/{i:02} Track {i}.mp3"),
            MP3,
            100 * KIB,
            900 * KIB,
        )?;
    }
    for i in 1..=10 {
        let mut body = String::from("#EXTM3U\n");
        for t in 1..=(i + 2) {
            body.push_str(&format!("../Album One/Disc 1/{t:02} Track {t}.mp3\n"));
        }
        g.file(
            &format!("Music/Playlists/Playlist {i:02}.m3u"),
            body.as_bytes(),
        )?;
    }

    // Projects: source-like text and CSV data.
    for i in 1..=30 {
        let body = format!(
            "//! Module {i} of the sample project.\n\npub fn value_{i}() -> u32 {{\n    {}\n}}\n",
            i * 7
        );
        g.file(
            &format!("Projects/edrive-sample/src/module_{i:02}.rs"),
            body.as_bytes(),
        )?;
    }
    for i in 1..=10 {
        g.text(
            &format!("Projects/edrive-sample/docs/chapter {i:02}.md"),
            KIB,
            16 * KIB,
        )?;
    }
    for i in 1..=20 {
        g.csv(&format!("Projects/data/csv/table_{i:02}.csv"), 200 * KIB)?;
    }

    // Archive: the big ones, plus an empty folder.
    g.binary("Archive/big file 5MiB.bin", b"", 5 * MIB, 5 * MIB)?;
    g.binary("Archive/backup 2024.tar", b"ustar", 2 * MIB, 2 * MIB)?;
    g.binary(
        "Archive/Old/clip.mp4",
        MP4,
        3 * MIB + MIB / 2,
        3 * MIB + MIB / 2,
    )?;
    g.file("Archive/Old/zero bytes.dat", b"")?;
    fs::create_dir_all(root.join("Archive/Old/Empty folder"))?;

    // Top-level non-ASCII folders.
    g.text("Café/menu du jour.txt", KIB, 3 * KIB)?;
    for i in 1..=5 {
        g.text(&format!("日本語/ドキュメント/メモ {i}.txt"), 256, 2 * KIB)?;
    }

    Ok(g.count)
}

/// JPEG start-of-image + JFIF header.
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00";
/// PNG signature.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
/// ID3v2 tag start.
const MP3: &[u8] = b"ID3\x04\x00";
/// ISO BMFF `ftyp` box.
const MP4: &[u8] = b"\x00\x00\x00\x18ftypmp42";

/// Writes files under the root and counts them.
struct Gen<'a> {
    root: &'a Path,
    count: usize,
    rng: XorShift,
}

impl Gen<'_> {
    /// Writes `data` at `rel` (parents created) with a deterministic mtime.
    fn file(&mut self, rel: &str, data: &[u8]) -> io::Result<()> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut f = File::create(&path)?;
        f.write_all(data)?;
        let mtime = BASE_MTIME + (self.count as u64) * 3_607 + self.rng.below(3_600);
        f.set_times(
            FileTimes::new().set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime)),
        )?;
        self.count += 1;
        Ok(())
    }

    /// A readable text file of a size drawn from `min..=max`.
    fn text(&mut self, rel: &str, min: usize, max: usize) -> io::Result<()> {
        let size = self.size(min, max);
        let mut s = String::with_capacity(size + 128);
        if size > 0 {
            s.push_str(&format!("{rel}\n\n"));
        }
        let mut line_len = 0;
        while s.len() < size {
            let w = WORDS[self.rng.below(WORDS.len() as u64) as usize];
            s.push_str(w);
            line_len += w.len() + 1;
            if line_len > 72 {
                s.push_str(".\n");
                line_len = 0;
            } else {
                s.push(' ');
            }
        }
        let mut cut = size.min(s.len());
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        self.file(rel, s.as_bytes())
    }

    /// A CSV file of up to `max` bytes.
    fn csv(&mut self, rel: &str, max: usize) -> io::Result<()> {
        let size = self.size(KIB, max);
        let mut s = String::from("id,name,quantity,price\n");
        let mut id = 1;
        while s.len() < size {
            let w = WORDS[self.rng.below(WORDS.len() as u64) as usize];
            let q = self.rng.below(1000);
            let p = self.rng.below(100_000);
            s.push_str(&format!("{id},{w},{q},{}.{:02}\n", p / 100, p % 100));
            id += 1;
        }
        self.file(rel, s.as_bytes())
    }

    /// A binary file: `magic` followed by pseudo-random bytes, total size in `min..=max`.
    fn binary(&mut self, rel: &str, magic: &[u8], min: usize, max: usize) -> io::Result<()> {
        let size = self.size(min, max).max(magic.len());
        let mut data = Vec::with_capacity(size + 8);
        data.extend_from_slice(magic);
        while data.len() < size {
            data.extend_from_slice(&self.rng.next().to_le_bytes());
        }
        data.truncate(size);
        self.file(rel, &data)
    }

    /// A size in `min..=max`, skewed towards the small end.
    fn size(&mut self, min: usize, max: usize) -> usize {
        if max <= min {
            return min;
        }
        let span = (max - min) as u64 + 1;
        let a = self.rng.below(span);
        let b = self.rng.below(span);
        min + a.min(b) as usize
    }
}

/// xorshift64: small, fast, deterministic.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(root: &Path) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                if e.file_type().unwrap().is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                    out.push((rel, fs::read(&p).unwrap().iter().map(|&b| b as u64).sum()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn deterministic_and_varied() {
        let base = std::env::temp_dir().join(format!("edrive-demo-test-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        let n = generate_demo_tree(&a).unwrap();
        assert_eq!(generate_demo_tree(&b).unwrap(), n);
        assert!((200..1000).contains(&n), "{n} files");
        let la = listing(&a);
        assert_eq!(la.len(), n);
        assert_eq!(la, listing(&b));
        let big = fs::metadata(a.join("Archive/big file 5MiB.bin"))
            .unwrap()
            .len();
        assert_eq!(big, 5 * MIB as u64);
        assert!(a.join("Photos/日本語/東京").is_dir());
        assert!(a.join("Documents/Notes/Café").is_dir());
        assert!(a.join("Archive/Old/Empty folder").is_dir());
        fs::remove_dir_all(&base).unwrap();
    }
}
