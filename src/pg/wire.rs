//! The socket and the framing of backend messages: every message is read
//! whole, with its length checked against a limit first, and handed to
//! `postgres-protocol`'s parser.

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The largest backend message read; a longer one is a protocol error.
pub const MAX_MESSAGE: usize = 64 << 20;

/// Why a message could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// Not the protocol: what is wrong.
    Bad(String),
}

/// The connection to the server.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Bytes played as the server (tests, fuzzing); what the client
    /// writes is dropped.
    Script(io::Cursor<Vec<u8>>),
}

impl Stream {
    pub fn set_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(d)?;
                s.set_write_timeout(d)
            }
            Stream::Unix(s) => {
                s.set_read_timeout(d)?;
                s.set_write_timeout(d)
            }
            Stream::Script(_) => Ok(()),
        }
    }

    /// Switches blocking off (to look whether the server sent something
    /// while the connection was idle) and back on.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
            Stream::Script(_) => Ok(()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Script(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Script(_) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Script(_) => Ok(()),
        }
    }
}

/// Reads one whole backend message.
pub fn read_message(r: &mut impl Read) -> Result<Message, ReadError> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).map_err(ReadError::Io)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len < 4 {
        return Err(ReadError::Bad(format!("message length {len} is under 4")));
    }
    if len > MAX_MESSAGE {
        return Err(ReadError::Bad(format!("a message of {len} bytes is over the limit of {MAX_MESSAGE}")));
    }
    let body = len - 4;
    let mut buf = Vec::with_capacity(5 + body.min(64 << 10));
    buf.extend_from_slice(&head);
    let got = r.take(body as u64).read_to_end(&mut buf).map_err(ReadError::Io)?;
    if got < body {
        return Err(ReadError::Io(io::Error::from(io::ErrorKind::UnexpectedEof)));
    }
    let mut buf = BytesMut::from(&buf[..]);
    match Message::parse(&mut buf) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(ReadError::Bad("a message shorter than its length".into())),
        Err(e) => Err(ReadError::Bad(format!("message {:?}: {e}", head[0] as char))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn frames() {
        let mut c = io::Cursor::new(frame(b'Z', b"I"));
        assert!(matches!(read_message(&mut c), Ok(Message::ReadyForQuery(_))));
        assert!(matches!(read_message(&mut c), Err(ReadError::Io(_))));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![b'Z', 0, 0, 0, 3], "under 4"),
            (vec![b'D', 0x10, 0, 0, 0], "over the limit"),
            (frame(b'Z', b""), "message 'Z'"),
            (frame(b'Z', b"II"), "message 'Z'"),
            (frame(b'!', b""), "unknown message tag"),
            (frame(b'R', &[0, 0, 0, 99]), "authentication tag"),
        ];
        for (bytes, want) in cases {
            match read_message(&mut io::Cursor::new(bytes.clone())) {
                Err(ReadError::Bad(m)) => assert!(m.contains(want), "{bytes:?}: {m}"),
                Err(e) => panic!("{bytes:?}: {e:?}"),
                Ok(_) => panic!("{bytes:?}: accepted"),
            }
        }
        let mut short = frame(b'C', b"SELECT 1\0");
        short.truncate(8);
        assert!(matches!(read_message(&mut io::Cursor::new(short)), Err(ReadError::Io(_))));
    }

    proptest::proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut c = io::Cursor::new(bytes);
            for _ in 0..64 {
                if read_message(&mut c).is_err() {
                    break;
                }
            }
        }
    }
}
