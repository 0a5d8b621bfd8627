//! The SSH side of the client: connecting, checking the host key against known_hosts,
//! logging in, and opening the `rsftp` subsystem.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle, Msg};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, ChannelStream, Preferred};

use super::ClientError;
use super::rsftp::RsftpClient;
use super::sftp::SftpClient;
use crate::auth::Secret;
use crate::protocol::transport;

/// Asks the user about a new host key: given the host (as known_hosts names it) and the
/// key's SHA256 fingerprint, `true` trusts and remembers it.
pub type AskHostKey = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// What to do with a host key that known_hosts does not have yet.
pub enum NewHostKey {
    /// Refuse it (the safe default for scripts).
    Refuse,
    /// Trust it and remember it (`--accept-new-host-key`).
    Accept,
    /// Ask the user.
    Ask(AskHostKey),
}

/// How the server's host key is checked.
pub struct HostKeyCheck {
    pub known_hosts: PathBuf,
    pub new_key: NewHostKey,
}

impl HostKeyCheck {
    /// `~/.ssh/known_hosts`, refusing unknown keys.
    pub fn default_file() -> Option<PathBuf> {
        std::env::home_dir().map(|home| home.join(".ssh").join("known_hosts"))
    }
}

/// The outcome of the host key check, kept for [`Connection::connect`] to report.
#[derive(Debug, Clone)]
enum KeyVerdict {
    Known,
    Learned,
    Unknown { fingerprint: String },
    Changed { fingerprint: String, line: usize },
    Failed(String),
}

struct ClientHandler {
    host: String,
    port: u16,
    check: Arc<HostKeyCheck>,
    verdict: Arc<Mutex<Option<KeyVerdict>>>,
}

impl ClientHandler {
    fn judge(&self, key: &PublicKey) -> KeyVerdict {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let path = &self.check.known_hosts;
        let recorded =
            match russh::keys::known_hosts::known_host_keys_path(&self.host, self.port, path) {
                Ok(recorded) => recorded,
                Err(err) => return KeyVerdict::Failed(format!("{}: {err}", path.display())),
            };
        // Compare key data, not comments. Any other key on record for this host counts
        // as a change, whatever its type: a server that suddenly shows a key of another
        // type is as suspect as one that shows another key of the same type.
        if recorded
            .iter()
            .any(|(_, known)| known.key_data() == key.key_data())
        {
            return KeyVerdict::Known;
        }
        if let Some((line, _)) = recorded.first() {
            return KeyVerdict::Changed {
                fingerprint,
                line: *line,
            };
        }
        let trust = match &self.check.new_key {
            NewHostKey::Refuse => false,
            NewHostKey::Accept => true,
            NewHostKey::Ask(ask) => ask(&known_hosts_name(&self.host, self.port), &fingerprint),
        };
        if !trust {
            return KeyVerdict::Unknown { fingerprint };
        }
        match russh::keys::known_hosts::learn_known_hosts_path(&self.host, self.port, key, path) {
            Ok(()) => KeyVerdict::Learned,
            Err(err) => KeyVerdict::Failed(format!("cannot write {}: {err}", path.display())),
        }
    }
}

/// How known_hosts names a host: `host`, or `[host]:port` off port 22.
pub fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.judge(key),
            // We never advertise certificate algorithms, so this is a misbehaving server.
            _ => {
                KeyVerdict::Failed("the server sent a certificate, which we did not ask for".into())
            }
        };
        let ok = matches!(verdict, KeyVerdict::Known | KeyVerdict::Learned);
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(verdict);
        Ok(ok)
    }
}

/// A TCP connection to `host:port` from the local address `source`.
async fn connect_tcp_from(
    source: std::net::IpAddr,
    host: &str,
    port: u16,
) -> std::io::Result<tokio::net::TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        if addr.is_ipv4() != source.is_ipv4() {
            continue;
        }
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(std::net::SocketAddr::new(source, 0))?;
        match socket.connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            "no address of the host has the source address's family",
        )
    }))
}

/// An SSH connection to a server, before or after login.
pub struct Connection {
    handle: Handle<ClientHandler>,
    user: String,
    host: String,
    port: u16,
}

/// The russh client configuration: a big window (the client cannot grow it later, so it
/// must be big from the start), AES-GCM first, TCP_NODELAY.
fn client_config() -> client::Config {
    client::Config {
        window_size: transport::WINDOW_SIZE,
        maximum_packet_size: transport::MAX_PACKET,
        channel_buffer_size: transport::CHANNEL_BUFFER,
        nodelay: true,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        preferred: Preferred {
            cipher: std::borrow::Cow::Borrowed(transport::CIPHERS),
            ..Preferred::default()
        },
        ..Default::default()
    }
}

impl Connection {
    /// Connects and checks the host key. Log in next.
    pub async fn connect(
        host: &str,
        port: u16,
        user: &str,
        check: HostKeyCheck,
    ) -> Result<Connection, ClientError> {
        Self::connect_inner(host, port, None, user, check).await
    }

    /// Like [`Connection::connect`], from the local address `source` (for a machine with
    /// several addresses).
    pub async fn connect_from(
        source: std::net::IpAddr,
        host: &str,
        port: u16,
        user: &str,
        check: HostKeyCheck,
    ) -> Result<Connection, ClientError> {
        Self::connect_inner(host, port, Some(source), user, check).await
    }

    async fn connect_inner(
        host: &str,
        port: u16,
        source: Option<std::net::IpAddr>,
        user: &str,
        check: HostKeyCheck,
    ) -> Result<Connection, ClientError> {
        let verdict = Arc::new(Mutex::new(None));
        let handler = ClientHandler {
            host: host.to_owned(),
            port,
            check: Arc::new(check),
            verdict: Arc::clone(&verdict),
        };
        let config = Arc::new(client_config());
        let connected = match source {
            None => client::connect(config, (host, port), handler).await,
            Some(source) => match connect_tcp_from(source, host, port).await {
                Ok(stream) => client::connect_stream(config, stream, handler).await,
                Err(err) => Err(russh::Error::IO(err)),
            },
        };
        let verdict = verdict.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (connected, verdict) {
            (Ok(handle), _) => Ok(Connection {
                handle,
                user: user.to_owned(),
                host: host.to_owned(),
                port,
            }),
            (Err(_), Some(KeyVerdict::Unknown { fingerprint })) => {
                Err(ClientError::HostKeyUnknown {
                    host: known_hosts_name(host, port),
                    fingerprint,
                })
            }
            (Err(_), Some(KeyVerdict::Changed { fingerprint, line })) => {
                Err(ClientError::HostKeyChanged {
                    host: known_hosts_name(host, port),
                    fingerprint,
                    line,
                })
            }
            (Err(_), Some(KeyVerdict::Failed(message))) => Err(ClientError::HostKeyCheck(message)),
            (Err(russh::Error::IO(err)), _) => Err(ClientError::Connect {
                host: known_hosts_name(host, port),
                source: err,
            }),
            (Err(err), _) => Err(ClientError::Ssh(err)),
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Tries a password. `Ok(false)` means the server said no.
    pub async fn login_password(&mut self, password: &Secret) -> Result<bool, ClientError> {
        let result = self
            .handle
            .authenticate_password(self.user.clone(), password.expose())
            .await?;
        Ok(result.success())
    }

    /// Tries a private key.
    pub async fn login_key(&mut self, key: PrivateKey) -> Result<bool, ClientError> {
        let hash = self.handle.best_supported_rsa_hash().await?.flatten();
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        let result = self
            .handle
            .authenticate_publickey(self.user.clone(), key)
            .await?;
        Ok(result.success())
    }

    /// Tries every key a running ssh-agent holds. `Ok(false)` if there is no agent or
    /// none of its keys is accepted.
    pub async fn login_agent(&mut self) -> Result<bool, ClientError> {
        let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await else {
            return Ok(false);
        };
        let Ok(identities) = agent.request_identities().await else {
            return Ok(false);
        };
        let hash = self.handle.best_supported_rsa_hash().await?.flatten();
        for identity in identities {
            let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = identity else {
                continue;
            };
            match self
                .handle
                .authenticate_publickey_with(self.user.clone(), key, hash, &mut agent)
                .await
            {
                Ok(result) if result.success() => return Ok(true),
                Ok(_) => continue,
                Err(_) => continue,
            }
        }
        Ok(false)
    }

    /// Opens the `rsftp` subsystem and reads its greeting.
    pub async fn open_rsftp(&self) -> Result<RsftpClient<ChannelStream<Msg>>, ClientError> {
        let stream = self.open_subsystem("rsftp").await?;
        RsftpClient::start(stream).await
    }

    /// Opens the standard `sftp` subsystem, for servers without `rsftp`.
    pub async fn open_sftp(&self) -> Result<SftpClient<ChannelStream<Msg>>, ClientError> {
        let stream = self.open_subsystem("sftp").await?;
        SftpClient::start(stream).await
    }

    /// Opens a subsystem channel and waits for the server to accept it.
    pub async fn open_subsystem(&self, name: &str) -> Result<ChannelStream<Msg>, ClientError> {
        let mut channel = self.handle.channel_open_session().await?;
        channel.request_subsystem(true, name).await?;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => return Ok(channel.into_stream()),
                Some(ChannelMsg::Failure) | None => {
                    return Err(ClientError::Subsystem(name.to_owned()));
                }
                // Window adjustments and the like may come first.
                Some(_) => continue,
            }
        }
    }

    /// Runs `command` with `exec` and collects what it prints, up to `max_out` bytes of
    /// standard output (more is an error: a bound on a server that will not stop). The
    /// standard input is closed at once. `status` is `None` if the server sent none, or
    /// refused the request.
    pub async fn exec(&self, command: &str, max_out: usize) -> Result<ExecOutput, ClientError> {
        let mut channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        let mut output = ExecOutput::default();
        let mut refused = false;
        // Bounded by the channel: it ends with EOF or close, or by the server's refusal.
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Success => {
                    channel.eof().await?;
                }
                ChannelMsg::Failure => {
                    refused = true;
                    break;
                }
                ChannelMsg::Data { data } => {
                    if output.stdout.len() + data.len() > max_out {
                        return Err(ClientError::Protocol(format!(
                            "{command}: more than {max_out} bytes of output"
                        )));
                    }
                    output.stdout.extend_from_slice(&data);
                }
                ChannelMsg::ExitStatus { exit_status } => output.status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        if refused {
            output.status = None;
        }
        let _ = channel.close().await;
        Ok(output)
    }

    /// Starts `command` with `exec` and hands over its channel, once the server has
    /// accepted the request, for a conversation over its standard input and output.
    pub async fn exec_channel(&self, command: &str) -> Result<Channel<Msg>, ClientError> {
        let mut channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        // Bounded by the channel: the server answers the request, or closes it.
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => return Ok(channel),
                Some(ChannelMsg::Failure) | Some(ChannelMsg::Close) | None => {
                    return Err(ClientError::Subsystem(format!("exec {command}")));
                }
                Some(_) => continue,
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) -> Result<(), ClientError> {
        self.handle
            .disconnect(russh::Disconnect::ByApplication, "bye", "en")
            .await?;
        Ok(())
    }
}

/// What a command run with [`Connection::exec`] printed, and how it ended.
#[derive(Debug, Default)]
pub struct ExecOutput {
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
}

impl ExecOutput {
    /// Whether the command ran and exited with 0.
    pub fn succeeded(&self) -> bool {
        self.status == Some(0)
    }
}

/// Loads a private key file, with a passphrase if it is encrypted.
pub fn load_key(path: &Path, passphrase: Option<&Secret>) -> Result<PrivateKey, ClientError> {
    russh::keys::load_secret_key(path, passphrase.map(Secret::expose)).map_err(|err| {
        ClientError::Key {
            path: path.to_owned(),
            message: err.to_string(),
        }
    })
}
