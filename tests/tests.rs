//! Integration tests: a real rsftpd on 127.0.0.1:0, spoken to over real SSH by our
//! client library and by OpenSSH.

mod util;

mod admin;
mod bad_input;
mod binary;
mod client_batch;
mod client_host_keys;
mod client_resume;
mod client_shell;
mod client_support;
mod commands;
mod confinement;
mod exec;
mod fuzz_corpus;
mod limits;
mod login;
mod openssh;
mod paramiko_sftp;
mod path_escape;
mod quota;
mod quota_drift;
mod reload;
mod resume;
mod scp;
mod sftp;
mod sftp_raw;
mod sshd;
