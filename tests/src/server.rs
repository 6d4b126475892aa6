//! The real `tidemark-server` binary on a real socket, with its embedded store or in front of
//! an independent S3 implementation (s3s-fs), and native devices joined to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tidemark_cli::api::Api;
use tidemark_cli::{Client, ClientOptions, Storage};
use tidemark_core::{Role, SpaceKey};

/// The admin secret every test server starts with.
pub const ADMIN_SECRET: &str = "convergence-suite-admin-secret";
/// The space every test server makes on first start.
pub const SPACE: &str = "default";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The server binary: `TIDEMARK_SERVER_BIN`, else built by cargo into the workspace target.
pub fn server_binary() -> PathBuf {
    binary("TIDEMARK_SERVER_BIN", "tidemark-server", "tidemark-server")
}

/// The `tidemark` command: `TIDEMARK_CLI_BIN`, else built by cargo into the workspace target.
pub fn cli_binary() -> PathBuf {
    binary("TIDEMARK_CLI_BIN", "tidemark-cli", "tidemark")
}

/// The binary named by the variable `env`, else `bin` of `package`, built now (debug): a
/// suite can only run another package's binaries by building them itself.
fn binary(env: &str, package: &str, bin: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env) {
        return PathBuf::from(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--package", package, "--bin", bin])
        .current_dir(workspace())
        .status()
        .unwrap_or_else(|e| panic!("run cargo build for {bin}: {e}"));
    assert!(status.success(), "building {bin} failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    target
        .join("debug")
        .join(format!("{bin}{}", std::env::consts::EXE_SUFFIX))
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An independent S3 server (s3s-fs, installed by `cargo xtask test`) in its own process,
/// with one empty bucket; killed when dropped. The server's own tests use it too.
#[derive(Debug)]
pub struct ExternalS3 {
    /// Its endpoint.
    pub endpoint: String,
    /// Where it keeps objects, and its log (`s3s-fs.log`).
    pub root: TempDir,
    child: Child,
}

impl Drop for ExternalS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ExternalS3 {
    /// The bucket the server uses in it.
    pub const BUCKET: &str = "tidemark-ext";
    /// The access key it accepts.
    pub const ACCESS_KEY: &str = "EXTERNALKEY";
    /// The secret key that goes with [`ExternalS3::ACCESS_KEY`].
    pub const SECRET_KEY: &str = "external-secret-key";

    /// Starts s3s-fs with an empty bucket.
    pub async fn start() -> ExternalS3 {
        let binary = std::env::var("TIDEMARK_S3S_FS_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace().join("target/tools/s3s-fs/bin/s3s-fs"));
        assert!(
            binary.is_file(),
            "the independent S3 server is missing: run `cargo xtask test` (it installs s3s-fs \
             into target/tools) or set TIDEMARK_S3S_FS_BIN"
        );
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(Self::BUCKET)).unwrap();
        // Kept beside the objects: when a test fails, the store's side of the story.
        let log = std::fs::File::create(root.path().join("s3s-fs.log")).unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                Self::ACCESS_KEY,
                "--secret-key",
                Self::SECRET_KEY,
            ])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start s3s-fs");
        let mut external = ExternalS3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
            child,
        };
        wait_for_port(port, &mut external.child).await;
        external
    }
}

/// Waits until `child` listens on `port`. Panics if nothing does within 10 s or `child` exited;
/// callers hold `child` in a value that kills it when dropped, so the panic kills it too.
async fn wait_for_port(port: u16, child: &mut Child) {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the process meant to listen on port {port} exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on port {port}");
}

/// How to start a server.
#[derive(Debug, Default)]
pub struct ServerOptions<'a> {
    /// Serve presigned URLs for this origin instead of the server's own (a proxy in front of
    /// the store). With the embedded store, the proxy forwards to the server.
    pub store_origin: Option<String>,
    /// Use this store instead of the embedded one.
    pub external: Option<&'a ExternalS3>,
}

/// A running `tidemark-server` process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    /// The API's base URL.
    pub url: String,
    /// The socket it listens on.
    pub addr: SocketAddr,
    /// Its data folder (registry, secrets, embedded objects).
    pub data: TempDir,
    child: Child,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts the binary on a free port with a fresh data folder.
    pub async fn start(options: ServerOptions<'_>) -> ServerProcess {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(server_binary());
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--admin-secret", ADMIN_SECRET])
            .args(["--auth-rate-per-minute", "100000"])
            .env_remove("TIDEMARK_S3_ENDPOINT")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(external) = options.external {
            command
                .args(["--s3-endpoint", &external.endpoint])
                .args(["--s3-bucket", ExternalS3::BUCKET])
                .args(["--s3-access-key-id", ExternalS3::ACCESS_KEY])
                .args(["--s3-secret-access-key", ExternalS3::SECRET_KEY])
                .arg("--s3-path-style");
            if let Some(origin) = &options.store_origin {
                command.args(["--s3-public-endpoint", origin]);
            }
        } else if let Some(origin) = &options.store_origin {
            // The embedded store is served on the public URL's origin.
            command.args(["--public-url", origin]);
        }
        let child = command.spawn().expect("start tidemark-server");
        let mut server = ServerProcess {
            url,
            addr: ([127, 0, 0, 1], port).into(),
            data,
            child,
        };
        wait_for_port(port, &mut server.child).await;
        server
    }

    /// An admin's API client.
    pub async fn admin(&self) -> Api {
        let api = Api::new(&self.url, reqwest::Client::new());
        let session = api
            .admin_session(ADMIN_SECRET)
            .await
            .expect("admin session");
        api.with_token(&session.token)
    }

    /// A new device joined to the default space with `role`, keeping its checkpoint in
    /// memory.
    pub async fn device(
        &self,
        role: Role,
        space_key: Option<SpaceKey>,
        options: ClientOptions,
    ) -> Client {
        let code = self
            .admin()
            .await
            .invite(SPACE, role)
            .await
            .expect("invite");
        Client::join(
            Storage::Memory,
            &self.url,
            &code,
            "test device",
            space_key,
            options,
        )
        .await
        .expect("join")
    }

    /// Every file of the embedded store, with its bytes.
    pub fn stored_objects(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if let Ok(bytes) = std::fs::read(&path) {
                    out.push((path, bytes));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data.path().join("objects"), &mut out);
        out
    }
}
