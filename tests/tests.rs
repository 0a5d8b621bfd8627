//! Integration tests: a real rsftpd on 127.0.0.1:0, spoken to over real SSH by our
//! client library, by OpenSSH, and by rclone, lftp, curl and PuTTY.

mod util;

mod admin;
mod bad_input;
mod binary;
mod client_batch;
mod client_host_keys;
mod client_resume;
mod client_sftp;
mod client_shell;
mod client_support;
mod commands;
mod confinement;
mod curl;
mod exec;
mod fuzz_corpus;
mod guessing;
mod lftp;
mod limits;
mod limits_burst;
mod log_volume;
mod login;
mod memory;
mod memory_budget;
mod openssh;
mod paramiko_sftp;
mod path_escape;
mod putty;
mod quota;
mod quota_drift;
mod quota_rule;
mod rclone;
mod real_clients;
mod reload;
mod resume;
mod scp;
mod scp_legacy;
mod sftp;
mod sftp_raw;
mod sshd;
mod staging;
mod stalls;
mod storage_safety;
mod symlinks;
