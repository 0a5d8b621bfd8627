//! The results: samples per case and side, printed as medians and ratios in one table.

/// Which side a sample belongs to: OpenSSH (sshd, or `sftp` to sshd) or rsftp (rsftpd,
/// or the `rsftp` client to rsftpd).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    OpenSsh,
    Rsftp,
}

/// The unit of the server's CPU time per GB moved.
pub const CPU: &str = "s/GB";

struct Row {
    case: String,
    unit: &'static str,
    openssh: Vec<f64>,
    rsftp: Vec<f64>,
}

#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

impl Table {
    fn row(&mut self, case: &str, unit: &'static str) -> &mut Row {
        if let Some(i) = self
            .rows
            .iter()
            .position(|r| r.case == case && r.unit == unit)
        {
            return &mut self.rows[i];
        }
        self.rows.push(Row {
            case: case.to_owned(),
            unit,
            openssh: Vec::new(),
            rsftp: Vec::new(),
        });
        let last = self.rows.len() - 1;
        &mut self.rows[last]
    }

    /// Adds one sample to the row of `case` in `unit`; rows keep the order in which they
    /// were first seen. A row in s/GB is the server's CPU time for the case above it.
    pub fn add(&mut self, case: &str, unit: &'static str, side: Side, value: f64) {
        let row = self.row(case, unit);
        match side {
            Side::OpenSsh => row.openssh.push(value),
            Side::Rsftp => row.rsftp.push(value),
        }
    }

    /// Makes the row exist, so that a case with no samples on a side still shows.
    pub fn declare(&mut self, case: &str, unit: &'static str) {
        self.row(case, unit);
    }

    pub fn print(&self) {
        let label = |row: &Row| {
            if row.unit == CPU {
                "  server CPU time".to_owned()
            } else {
                row.case.clone()
            }
        };
        let width = self.rows.iter().map(|r| label(r).len()).max().unwrap_or(4);
        println!(
            "{:<width$}  {:<8} {:>10} {:>10} {:>8} {:>5}",
            "case", "unit", "OpenSSH", "rsftp", "ratio", "runs"
        );
        let fmt = |v: Option<f64>| match v {
            None => "-".to_owned(),
            Some(v) if v >= 100.0 => format!("{v:.0}"),
            Some(v) if v >= 10.0 => format!("{v:.1}"),
            Some(v) => format!("{v:.2}"),
        };
        for row in &self.rows {
            let (a, b) = (median(&row.openssh), median(&row.rsftp));
            let ratio = match (a, b) {
                (Some(a), Some(b)) if a > 0.0 => format!("{:.2}x", b / a),
                _ => "-".to_owned(),
            };
            let runs = row.openssh.len().max(row.rsftp.len());
            println!(
                "{:<width$}  {:<8} {:>10} {:>10} {:>8} {:>5}",
                label(row),
                row.unit,
                fmt(a),
                fmt(b),
                ratio,
                runs
            );
        }
    }
}
