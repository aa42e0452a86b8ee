//! The pages in a real browser: headless Chromium driven through WebDriver (Debian's `chromium`
//! and `chromium-driver`; `.ci/run` installs them). The test fails, it does not skip, when they
//! are missing.
//!
//! It draws digits on the canvas with pointer events, checks what the page says the network
//! reads, clears the canvas from the keyboard, and opens the mistakes page and one of its cells.
//! Screenshots of both pages are left in the target folder (`target/tmp/serve-draw.png`,
//! `serve-mistakes.png`).

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{request, trained_mlp, Server};
use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// A program from `$VARIABLE`, else the first of `names` on the `PATH` or in `/usr/bin`.
fn program(variable: &str, names: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .collect();
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the browser test needs {} (set {variable}, or `apt-get install chromium \
                 chromium-driver`, as .ci/run does)",
                names.join(" or ")
            )
        })
}

/// ChromeDriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(program("CHROMEDRIVER", &["chromedriver"]))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session. The flags keep it off the network (this machine has none) and
/// let it run as root in a container.
async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let chromium = program(
        "CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// The value of the JavaScript expression `expression` on the current page.
async fn eval(client: &Client, expression: &str) -> Value {
    client
        .execute(&format!("return {expression};"), vec![])
        .await
        .expect("the script runs")
}

/// Waits (up to 20 s) until `expression` equals `expected`; returns its last value.
async fn wait_for(client: &Client, expression: &str, expected: Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = eval(client, expression).await;
        if value == expected || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Draws one stroke through `points` (offsets in CSS pixels from the canvas's centre) with the
/// mouse: pointerdown, pointermoves, pointerup.
async fn stroke(client: &Client, points: &[(f64, f64)]) {
    let pad = client.find(Locator::Id("pad")).await.unwrap();
    let to = |&(x, y): &(f64, f64)| PointerAction::MoveToElement {
        element: pad.clone(),
        duration: Some(Duration::from_millis(10)),
        x: x.round(),
        y: y.round(),
    };
    let mut mouse =
        MouseActions::new("mouse".into())
            .then(to(&points[0]))
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            });
    for point in &points[1..] {
        mouse = mouse.then(to(point));
    }
    mouse = mouse.then(PointerAction::Up {
        button: MOUSE_BUTTON_LEFT,
    });
    client.perform_actions(mouse).await.expect("the stroke");
}

const PREDICTION: &str = "document.getElementById('prediction').textContent";

/// How many of the 28x28 input picture's pixels are not white.
const INKED_INPUT_PIXELS: &str = "(() => { \
    const data = document.getElementById('input').getContext('2d').getImageData(0, 0, 28, 28).data; \
    let n = 0; for (let i = 0; i < data.length; i += 4) { if (data[i] < 255) n++; } return n; })()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drawing_on_the_page_shows_what_the_network_reads_and_the_mistakes_page_opens_a_cell() {
    let server = Server::start(trained_mlp(), &[]);
    let base = format!("http://{}", server.addr);
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;

    client.goto(&format!("{base}/")).await.unwrap();
    let described = wait_for(
        &client,
        "document.getElementById('model').textContent.includes('Test accuracy')",
        json!(true),
    )
    .await;
    assert_eq!(described, json!(true), "the model's description is shown");
    assert_eq!(eval(&client, PREDICTION).await, json!("–"));
    assert_eq!(eval(&client, INKED_INPUT_PIXELS).await, json!(0));

    // A vertical stroke: a 1.
    let one: Vec<(f64, f64)> = (0..=12).map(|i| (0.0, -90.0 + 15.0 * i as f64)).collect();
    stroke(&client, &one).await;
    assert_eq!(wait_for(&client, PREDICTION, json!("1")).await, json!("1"));
    let status = eval(&client, "document.getElementById('status').textContent").await;
    assert!(
        status.as_str().unwrap().starts_with("The network reads 1"),
        "{status}"
    );
    assert_eq!(
        eval(&client, "document.querySelectorAll('#bars li').length").await,
        json!(10)
    );
    let inked = eval(&client, INKED_INPUT_PIXELS).await.as_u64().unwrap();
    assert!(
        (20..200).contains(&inked),
        "{inked} inked pixels in the input picture"
    );

    // Clear, from the keyboard: Enter on the focused button.
    let clear = client.find(Locator::Id("clear")).await.unwrap();
    clear.send_keys("\u{E007}").await.unwrap();
    assert_eq!(wait_for(&client, PREDICTION, json!("–")).await, json!("–"));
    assert_eq!(eval(&client, INKED_INPUT_PIXELS).await, json!(0));

    // An ellipse: a 0.
    let zero: Vec<(f64, f64)> = (0..=40)
        .map(|i| {
            let angle = std::f64::consts::TAU * i as f64 / 40.0;
            (60.0 * angle.sin(), -90.0 * angle.cos())
        })
        .collect();
    stroke(&client, &zero).await;
    assert_eq!(wait_for(&client, PREDICTION, json!("0")).await, json!("0"));
    let screenshot = client.screenshot().await.unwrap();
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-draw.png");
    std::fs::write(&path, screenshot).unwrap();

    // The mistakes page: the matrix, then the worst confusion's images.
    client.goto(&format!("{base}/mistakes")).await.unwrap();
    let cells = wait_for(
        &client,
        "document.querySelectorAll('#matrix td button').length",
        json!(100),
    )
    .await;
    assert_eq!(cells, json!(100));
    let confusion = request(server.addr, "GET", "/api/confusion", None).json();
    let matrix = &confusion["matrix"];
    let (truth, predicted) = (0..10)
        .flat_map(|t| (0..10).map(move |p| (t, p)))
        .filter(|(t, p)| t != p)
        .max_by_key(|&(t, p)| matrix[t][p].as_u64().unwrap())
        .unwrap();
    let count = matrix[truth][predicted].as_u64().unwrap();
    let cell = client
        .find(Locator::Css(&format!(
            "#matrix button[data-truth='{truth}'][data-predicted='{predicted}']"
        )))
        .await
        .unwrap();
    assert_eq!(cell.text().await.unwrap(), count.to_string());
    cell.click().await.unwrap();
    let shown = wait_for(
        &client,
        "document.querySelectorAll('#gallery li').length",
        json!(count.min(100)),
    )
    .await;
    assert_eq!(shown, json!(count.min(100)));
    let status = eval(
        &client,
        "document.getElementById('cell-status').textContent",
    )
    .await;
    assert!(
        status
            .as_str()
            .unwrap()
            .starts_with(&format!("True {truth}, predicted {predicted}")),
        "{status}"
    );
    let caption = eval(
        &client,
        "document.querySelector('#gallery li p').textContent",
    )
    .await;
    assert!(caption.as_str().unwrap().starts_with('#'), "{caption}");
    let screenshot = client.screenshot().await.unwrap();
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-mistakes.png");
    std::fs::write(&path, screenshot).unwrap();

    client.close().await.unwrap();
}
