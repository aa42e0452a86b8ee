//! `mnist-nn serve` in a child process, a model for it, and a small HTTP/1.1 client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// An MLP (784-128-10) trained for 3 epochs with Adam (test accuracy about 0.97), made once per
/// test binary in a folder that outlives the tests.
pub fn trained_mlp() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let args = "train --hidden 128 --epochs 3 --optimizer adam --lr 0.001 --batch-size 64";
        train_model("mlp", &args.split(' ').collect::<Vec<_>>())
    })
}

/// The CNN of `experiment fast` (two convolutions, test accuracy about 0.99), made once per test
/// binary.
pub fn trained_cnn() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| train_model("cnn", &["experiment", "fast"]))
}

/// Trains a model with `mnist-nn ARGS --save FILE` (ARGS a `train` or `experiment` command) into
/// a fresh folder that is kept; returns the file.
pub fn train_model(name: &str, args: &[&str]) -> PathBuf {
    let dir = tempfile::tempdir().expect("a temporary folder").keep();
    let path = dir.join(format!("{name}.safetensors"));
    let mnist = super::mnist_dir();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--save", path.to_str().unwrap()]);
    let output = super::run(&all, &[("MNIST_DIR", mnist.to_str().unwrap())], None);
    assert!(
        output.status.success(),
        "training {name} failed: {}",
        super::stderr(&output)
    );
    path
}

/// A running `mnist-nn serve`, stopped (SIGKILL) when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it printed before it started listening.
    pub banner: Vec<String>,
    /// What it prints afterwards, collected until it stops.
    rest: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Server {
    /// Starts `mnist-nn serve --model MODEL --addr 127.0.0.1:0 EXTRA` and waits until it
    /// listens.
    pub fn start(model: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mnist-nn"))
            .args([
                "serve",
                "--model",
                model.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("MNIST_DIR", super::mnist_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mnist-nn serve starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = Vec::new();
        let addr = loop {
            let line = lines
                .next()
                .expect("the server prints its address before stopping")
                .expect("readable output");
            banner.push(line.clone());
            if let Some(rest) = line.strip_prefix("serving on http://") {
                let addr = rest.split('/').next().unwrap();
                break addr.parse().expect("an address");
            }
        };
        // Keep reading what it prints so that it never blocks on a full pipe.
        let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect());
        Server {
            child,
            addr,
            banner,
            rest: Some(rest),
        }
    }

    /// Sends SIGINT (what Ctrl-C sends) and waits for the process to end: its exit status and
    /// what it printed after its address.
    pub fn interrupt(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let kill = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(kill.success());
        let status = self.child.wait().expect("the server ends");
        let rest = self.rest.take().unwrap().join().unwrap();
        (status, rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status code, headers (names in lower case) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One kept-alive HTTP/1.1 connection.
pub struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).expect("the server accepts connections");
        stream.set_nodelay(true).unwrap();
        Connection {
            reader: BufReader::new(stream),
        }
    }

    /// Sends a request (a body and its content type when `body` is given) and reads the answer.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> std::io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        if let Some((content_type, bytes)) = body {
            if !content_type.is_empty() {
                head += &format!("Content-Type: {content_type}\r\n");
            }
            head += &format!("Content-Length: {}\r\n", bytes.len());
        }
        head += "\r\n";
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        if let Some((_, bytes)) = body {
            stream.write_all(bytes)?;
        }
        self.read_response()
    }

    fn read_response(&mut self) -> std::io::Result<Response> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            let (name, value) = trimmed
                .split_once(':')
                .ok_or_else(|| std::io::Error::other(format!("bad header {trimmed:?}")))?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| std::io::Error::other("no content-length"))?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// One request on a connection of its own.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> Response {
    Connection::open(addr)
        .request(method, path, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A PNG of 784 MNIST pixels (0 = background, 255 = ink), as they are stored.
pub fn png_of(pixels: &[u8]) -> Vec<u8> {
    let picture = image::GrayImage::from_raw(28, 28, pixels.to_vec()).expect("784 pixels");
    let mut bytes = Vec::new();
    picture
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .expect("PNG encoding");
    bytes
}
