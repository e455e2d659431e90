//! A writer for the "newc" cpio format, the one the kernel unpacks as an initramfs.
//!
//! Written here rather than with a `cpio` program because no host cpio package is assumed,
//! and because it can add the `/dev/console` device node without root: the kernel opens
//! `/dev/console` for init's stdin/stdout *before* init runs, so the archive must carry it.
//! Every entry is owned by root with mtime 0, so the archive depends only on its contents.
//! Uncompressed on purpose: the kernel accepts it, and decompressing under TCG costs seconds.

use std::{
    fs::File,
    io::{self, BufWriter, Read as _, Write},
    path::Path,
};

use anyhow::{Context as _, Result, bail};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

pub struct Writer<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

impl Writer<BufWriter<File>> {
    pub fn create(path: &Path) -> Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Writer::new(BufWriter::new(file)))
    }
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer {
            out,
            next_ino: 1,
            written: 0,
        }
    }

    /// A directory; its parents must have been added first.
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<()> {
        self.header(name, S_IFDIR | perm, 2, 0, (0, 0))?;
        self.pad()
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<()> {
        self.header(name, S_IFREG | perm, 1, data.len(), (0, 0))?;
        self.write(data)?;
        self.pad()
    }

    /// A regular file with the contents of `source` on the host.
    pub fn file_from(&mut self, name: &str, perm: u32, source: &Path) -> Result<()> {
        let mut src =
            File::open(source).with_context(|| format!("cannot open {}", source.display()))?;
        let len = src
            .metadata()
            .with_context(|| format!("cannot stat {}", source.display()))?
            .len();
        let size = usize::try_from(len).context("file too large for a cpio archive")?;
        self.header(name, S_IFREG | perm, 1, size, (0, 0))?;
        let copied = io::copy(&mut (&mut src).take(len), &mut self.out)
            .with_context(|| format!("cannot copy {} into the archive", source.display()))?;
        if copied != len {
            bail!("{} changed size while being archived", source.display());
        }
        self.written += copied;
        self.pad()
    }

    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        self.header(name, S_IFCHR | perm, 1, 0, (major, minor))?;
        self.pad()
    }

    /// Writes the trailer and flushes; the archive is complete only after this.
    pub fn finish(mut self) -> Result<W> {
        self.header("TRAILER!!!", 0, 1, 0, (0, 0))?;
        self.pad()?;
        self.out.flush().context("cannot write the archive")?;
        Ok(self.out)
    }

    fn header(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        size: usize,
        rdev: (u32, u32),
    ) -> Result<()> {
        if name.starts_with('/') || name.is_empty() {
            bail!("cpio entry names are relative and non-empty: `{name}`");
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let size = u32::try_from(size).context("newc cpio entries are limited to 4 GiB")?;
        let namesize = u32::try_from(name.len() + 1).context("cpio entry name too long")?;
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
        // rdevmajor, rdevminor, namesize, check
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
            0, 0, 0, 0, 0, rdev.0, rdev.1, 0
        );
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out
            .write_all(data)
            .context("cannot write the archive")?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Header+name and file data are each padded to a multiple of 4 bytes.
    fn pad(&mut self) -> Result<()> {
        let rem = (self.written % 4) as usize;
        if rem != 0 {
            self.write(&[0; 3][..4 - rem])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Writer;

    #[test]
    fn newc_layout() {
        let mut w = Writer::new(Vec::new());
        w.dir("bin", 0o755).unwrap();
        w.file("init", 0o755, b"#!x\n").unwrap();
        w.char_device("dev/console", 0o600, 5, 1).unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        // First header: ino 1, a directory 0755.
        assert!(text.starts_with("07070100000001000041ed"), "{text}");
        // 110-byte header + "bin\0" = 114, padded to 116.
        assert_eq!(&out[110..114], b"bin\0");
        assert_eq!(&out[114..116], b"\0\0");
        assert!(text.contains("init\0"));
        assert!(text.contains("#!x\n"));
        // The console device: rdevmajor 5, rdevminor 1.
        let console = text.find("dev/console").unwrap();
        let header = &text[console - 110..console];
        assert_eq!(&header[78..94], "0000000500000001", "{header}");
        assert!(text.contains("TRAILER!!!\0"));
    }
}
