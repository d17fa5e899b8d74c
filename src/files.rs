//! Reading the files users name: regular files only, and within a size cap.
//!
//! A path from the command line or an import can lead anywhere: to
//! `/dev/zero` (endless), to a FIFO (blocks until a writer comes), to a
//! folder. Every such read goes through here, so none of them can hang flowc
//! or grow it without bound.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The largest `.flow` file, template registry, builder JSON or compiled
/// program flowc reads (documented in docs/language.md, *Limits*). Real
/// sources are a few KiB; this leaves room for generated ones.
pub const MAX_INPUT_BYTES: u64 = 64 << 20;

/// For [`read_regular`]: no cap. Only for inputs that are data rather than
/// source (contacts files), where a regular file is finite and may
/// legitimately be large.
pub const NO_LIMIT: u64 = u64::MAX;

/// What a path names, when it is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Folder,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Other,
}

impl Kind {
    fn of(t: std::fs::FileType) -> Kind {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if t.is_fifo() {
                return Kind::Fifo;
            }
            if t.is_socket() {
                return Kind::Socket;
            }
            if t.is_char_device() {
                return Kind::CharDevice;
            }
            if t.is_block_device() {
                return Kind::BlockDevice;
            }
        }
        if t.is_dir() {
            Kind::Folder
        } else {
            Kind::Other
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Folder => "a folder",
            Kind::Fifo => "a FIFO (named pipe)",
            Kind::Socket => "a socket",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Other => "a special file",
        }
    }
}

/// Why a file could not be read. `Display` is the reason alone, for a
/// message such as "cannot read `x.flow`: {reason}".
#[derive(Debug)]
pub enum ReadError {
    NotFound,
    PermissionDenied,
    NotRegular(Kind),
    TooLarge { limit: u64 },
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotFound => f.write_str("no such file"),
            ReadError::PermissionDenied => f.write_str("permission denied"),
            ReadError::NotRegular(Kind::Folder) => f.write_str("it is a folder, not a file"),
            ReadError::NotRegular(k) => write!(f, "it is {}, not a regular file", k.describe()),
            ReadError::TooLarge { limit } => {
                write!(f, "it is larger than {}, the limit for an input file", mib(*limit))
            }
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> ReadError {
        match e.kind() {
            std::io::ErrorKind::NotFound => ReadError::NotFound,
            std::io::ErrorKind::PermissionDenied => ReadError::PermissionDenied,
            std::io::ErrorKind::IsADirectory => ReadError::NotRegular(Kind::Folder),
            _ => ReadError::Io(e),
        }
    }
}

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Opens `path` for reading if it is a regular file (after following
/// symlinks). The type is checked before opening, so a device is never
/// opened, and again on the open handle, so a file swapped in between is
/// caught; the open itself never waits (`O_NONBLOCK`), so a FIFO swapped in
/// cannot block either. Returns the file and its size.
pub fn open_regular(path: &Path) -> Result<(File, u64), ReadError> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(Kind::of(meta.file_type())));
    }
    let file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(Kind::of(meta.file_type())));
    }
    Ok((file, meta.len()))
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK changes nothing for a regular file's reads; it only keeps
    // the open of a FIFO from waiting for a writer.
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// The whole of a regular file of at most `limit` bytes. A file that grows
/// past the limit while being read is refused too: at most `limit + 1`
/// bytes are ever read.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let (file, len) = open_regular(path)?;
    if len > limit {
        return Err(ReadError::TooLarge { limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// [`read_regular`] with the input limit, as UTF-8 text.
pub fn read_text(path: &Path) -> Result<String, TextError> {
    let bytes = read_regular(path, MAX_INPUT_BYTES).map_err(TextError::Read)?;
    String::from_utf8(bytes).map_err(|e| TextError::NotUtf8 { at: e.utf8_error().valid_up_to() })
}

/// Why a text file could not be read.
#[derive(Debug)]
pub enum TextError {
    Read(ReadError),
    NotUtf8 { at: usize },
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::Read(e) => e.fmt(f),
            TextError::NotUtf8 { at } => write!(f, "it is not valid UTF-8 (byte {at})"),
        }
    }
}

impl std::error::Error for TextError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("flowc-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    #[test]
    fn regular_files_are_read_and_everything_else_is_named() {
        let d = tmp("kinds");
        std::fs::write(d.join("a.flow"), "segment s = true\n").expect("write");
        assert_eq!(read_regular(&d.join("a.flow"), 100).expect("read"), b"segment s = true\n");
        assert!(matches!(read_regular(&d, 100), Err(ReadError::NotRegular(Kind::Folder))));
        assert!(matches!(read_regular(&d.join("missing"), 100), Err(ReadError::NotFound)));
        #[cfg(unix)]
        {
            let e = read_regular(Path::new("/dev/zero"), 100).expect_err("a device");
            assert!(matches!(e, ReadError::NotRegular(Kind::CharDevice)));
            assert_eq!(e.to_string(), "it is a character device, not a regular file");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_limit_is_inclusive() {
        let d = tmp("limit");
        std::fs::write(d.join("f"), vec![b'x'; 10]).expect("write");
        assert_eq!(read_regular(&d.join("f"), 10).expect("at the limit").len(), 10);
        let e = read_regular(&d.join("f"), 9).expect_err("over");
        assert!(matches!(e, ReadError::TooLarge { limit: 9 }));
        assert_eq!(
            ReadError::TooLarge { limit: MAX_INPUT_BYTES }.to_string(),
            "it is larger than 64 MiB, the limit for an input file"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
