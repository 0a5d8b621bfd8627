//! Asking the person at the terminal: passphrases and passwords without echo, and
//! whether to trust a host key never seen before. Nothing here asks when standard input
//! is not a terminal: a script gets a clear refusal instead of a hang.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use super::login::Ask;
use crate::auth::Secret;

/// Asks on the terminal, if standard input is one.
pub struct TerminalAsk {
    interactive: bool,
}

impl TerminalAsk {
    pub fn new() -> TerminalAsk {
        TerminalAsk {
            interactive: std::io::stdin().is_terminal(),
        }
    }
}

impl Default for TerminalAsk {
    fn default() -> Self {
        TerminalAsk::new()
    }
}

fn prompt_secret(prompt: &str) -> Option<Secret> {
    // rpassword reads from the terminal itself, with echo off, and restores it.
    rpassword::prompt_password(prompt).ok().map(Secret::new)
}

impl Ask for TerminalAsk {
    fn passphrase(&self, key: &Path) -> Option<Secret> {
        if !self.interactive {
            return None;
        }
        prompt_secret(&format!("Enter passphrase for key '{}': ", key.display()))
    }

    fn password(&self, user: &str, host: &str) -> Option<Secret> {
        if !self.interactive {
            return None;
        }
        prompt_secret(&format!("{user}@{host}'s password: "))
    }

    fn can_ask(&self) -> bool {
        self.interactive
    }

    fn tell(&self, message: &str) {
        eprintln!("{message}");
    }
}

/// Whether standard input and standard error are both terminals, so that a question can
/// be both seen and answered.
pub fn can_confirm() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Shows a host key never seen before and asks whether to trust it. Only a typed `yes`
/// trusts it.
pub fn confirm_new_host_key(host: &str, fingerprint: &str, known_hosts: &Path) -> bool {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "The authenticity of host '{host}' can't be established.\n\
         Its key fingerprint is {fingerprint}.\n\
         If you trust it, it will be remembered in {}.",
        known_hosts.display()
    );
    let stdin = std::io::stdin();
    for _ in 0..3 {
        let _ = write!(
            err,
            "Are you sure you want to continue connecting (yes/no)? "
        );
        let _ = err.flush();
        let mut answer = String::new();
        match stdin.lock().read_line(&mut answer) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        match answer.trim().to_ascii_lowercase().as_str() {
            "yes" => {
                let _ = writeln!(
                    err,
                    "Warning: permanently added '{host}' ({fingerprint}) to {}.",
                    known_hosts.display()
                );
                return true;
            }
            "no" | "n" => return false,
            _ => {
                let _ = writeln!(err, "Please type 'yes' or 'no'.");
            }
        }
    }
    false
}
