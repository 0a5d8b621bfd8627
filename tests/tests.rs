//! Integration tests: a real rsftpd on 127.0.0.1:0, spoken to over real SSH by our
//! client library and by OpenSSH.

mod util;

mod admin;
// mod bad_input;
mod commands;
mod confinement;
// mod limits;
mod login;
// mod openssh;
// mod quota;
mod reload;
// mod resume;
