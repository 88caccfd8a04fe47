//! A real browser for the console's tests: Debian's headless Chromium, driven over WebDriver by
//! chromedriver. Missing either is a failure that says how to install them, never a skip.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Map, Value};

use crate::helpers::check_deadline;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "apt-get install -y chromium chromium-driver";

/// Longest a page or an element may take to appear.
const PATIENCE: Duration = Duration::from_secs(30);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// How the browser runs.
pub struct Options {
    pub width: u32,
    pub height: u32,
    pub javascript: bool,
}

/// The port chromedriver says it listens on ("... started successfully on port N."); its
/// further output is drained so that it never blocks on a full pipe.
fn driver_port(driver: &mut std::process::Child) -> u16 {
    use std::io::{BufRead, BufReader};
    let stdout = driver.stdout.take().expect("chromedriver's output");
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(port) = line
                .strip_prefix("ChromeDriver was started successfully on port ")
                .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
            {
                let _ = port_tx.send(port);
            }
        }
    });
    port_rx
        .recv_timeout(PATIENCE)
        .expect("chromedriver to say its port")
}

impl Browser {
    pub async fn start(options: Options) -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(program).exists(),
                "the console's browser tests need {program}; install Chromium and its driver \
                 with: {INSTALL} (scripts/test does it)"
            );
        }
        // A group of its own, so that a test that fails ends chromedriver and the Chromium it
        // started together (`Drop`). Port 0: it binds a free port itself and says which.
        let mut driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let port = driver_port(&mut driver);
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={},{}", options.width, options.height),
        ];
        let mut chrome = json!({ "binary": CHROMIUM });
        if !options.javascript {
            args.push("--blink-settings=scriptEnabled=false".to_owned());
        }
        chrome["args"] = json!(args);
        let mut capabilities = Map::new();
        capabilities.insert("goog:chromeOptions".into(), chrome);
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(error) => {
                    check_deadline(deadline, &format!("chromedriver to start ({error})"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The page's text as the browser renders it (nothing hidden). A page still being replaced
    /// by the next one is read again.
    pub async fn text(&self) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let read = async {
                let body = self.client.find(Locator::Css("body")).await?;
                body.text().await
            };
            match read.await {
                Ok(text) => return text,
                Err(error) => check_deadline(deadline, &format!("the page's text ({error})")),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page's text contains `expected`.
    pub async fn wait_for_text(&self, expected: &str) -> String {
        self.wait_for_page(&format!("{expected:?} on the page"), |text| {
            text.contains(expected)
        })
        .await
    }

    /// Waits until the page's text is what `done` accepts (`what` says it, for the failure):
    /// for a page that replaces one already showing the same text, what tells them apart.
    pub async fn wait_for_page(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.text().await;
            if done(&text) {
                return text;
            }
            check_deadline(deadline, &format!("{what}; it reads:\n{text}"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The form control a label names (by its `for`): every control must have one.
    pub async fn field(&self, label: &str) -> fantoccini::elements::Element {
        let label_element = self
            .client
            .find(Locator::XPath(&format!(
                "//label[normalize-space()='{label}']"
            )))
            .await
            .unwrap_or_else(|_| panic!("no label {label:?}"));
        let target = label_element
            .attr("for")
            .await
            .unwrap()
            .expect("a label for a control");
        self.client
            .find(Locator::Id(&target))
            .await
            .unwrap_or_else(|_| panic!("no control for the label {label:?}"))
    }

    pub async fn click_button(&self, text: &str) {
        self.client
            .find(Locator::XPath(&format!(
                "//button[normalize-space()='{text}']"
            )))
            .await
            .unwrap_or_else(|_| panic!("no button {text:?}"))
            .click()
            .await
            .unwrap();
    }

    pub async fn click_link(&self, text: &str) {
        self.client
            .find(Locator::LinkText(text))
            .await
            .unwrap_or_else(|_| panic!("no link {text:?}"))
            .click()
            .await
            .unwrap();
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// Saves a screenshot to `SCREENSHOTS_DIR/name.png` when that is set.
    pub async fn screenshot(&self, name: &str) {
        let Ok(folder) = std::env::var("SCREENSHOTS_DIR") else {
            return;
        };
        let png = self.client.screenshot().await.unwrap();
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{name}.png")), png).unwrap();
    }

    /// What sticks out past the window's right edge (so the page would scroll sideways): the
    /// first such element's tag, class and width, or null when the page fits.
    pub async fn overflow(&self) -> Value {
        self.client
            .execute(
                "if (document.documentElement.scrollWidth <= window.innerWidth) return null;
                 for (const e of document.querySelectorAll('body *')) {
                   const box = e.getBoundingClientRect();
                   if (box.right > window.innerWidth || e.scrollWidth > e.clientWidth + 1)
                     return [e.tagName, e.className, e.textContent.slice(0, 80), box.right,
                             e.scrollWidth, window.innerWidth];
                 }
                 return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            )
            .await
            .unwrap()
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
