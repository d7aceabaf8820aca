//! What each section of the bench hands back: its part of BENCHMARKS.md,
//! its figures for BENCHMARKS.json, and the targets it checks, so the two
//! files say the same thing and the targets table is computed, not typed.

use serde_json::{Value, json};

use crate::Measured;

/// One section's result.
pub struct Section {
    pub markdown: String,
    /// Every figure of the section's tables, as numbers.
    pub figures: Value,
    pub targets: Vec<Target>,
}

impl Section {
    /// What a profiling run (one kind of run only) returns: nothing.
    pub fn empty() -> Section {
        Section {
            markdown: String::new(),
            figures: Value::Null,
            targets: Vec::new(),
        }
    }
}

/// A target of the issues and how the run measured against it.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    /// The goal as written in the issue, e.g. "≥ 0.85".
    pub goal: String,
    pub value: f64,
    /// How `value` is shown ("0.85", "3.14 ms").
    pub shown: String,
    pub met: bool,
}

impl Target {
    /// A ratio that must reach `min`.
    pub fn ratio_at_least(name: impl Into<String>, value: f64, min: f64) -> Target {
        Target {
            name: name.into(),
            goal: format!("≥ {min:.2}"),
            value,
            shown: format!("{value:.2}"),
            met: value >= min,
        }
    }

    /// A figure in `unit` that must stay at or under `max`.
    pub fn at_most(name: impl Into<String>, value: f64, max: f64, unit: &str) -> Target {
        Target {
            name: name.into(),
            goal: format!("≤ {max} {unit}"),
            value,
            shown: format!("{value:.2} {unit}"),
            met: value <= max,
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "name": self.name,
            "goal": self.goal,
            // serde_json writes a NaN (not measured) as null.
            "value": self.value,
            "met": self.met,
        })
    }
}

/// The largest of `v`, NaN (not measured) when it is empty.
pub fn worst(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// KiB as MiB, NaN when not measured.
pub fn mib(kib: Option<u64>) -> f64 {
    kib.map_or(f64::NAN, |k| k as f64 / 1024.0)
}

/// KiB as a table cell: "38.6 MiB", or "not measured".
pub fn mib_cell(kib: Option<u64>) -> String {
    kib.map_or("not measured".to_owned(), |_| {
        format!("{:.1} MiB", mib(kib))
    })
}

/// The runs of one kind, each with its rate and CPU per unit.
pub fn runs(v: &[Measured]) -> Value {
    Value::Array(
        v.iter()
            .map(|m| {
                json!({
                    "rate": m.rate,
                    "cpu_us": m.own_us,
                    "broker_cpu_us": m.broker_us,
                })
            })
            .collect(),
    )
}

/// The targets table at the top of BENCHMARKS.md.
pub fn targets_table(targets: &[Target]) -> String {
    let met = targets.iter().filter(|t| t.met).count();
    let mut s = format!(
        "## Targets\n\n{met} of {} met in this run. Each figure is computed from the tables below \
         (and is in BENCHMARKS.json); for a target not met, the profile at the end says what stands \
         in the way.\n\n| target | goal | measured | met |\n| --- | --- | --- | --- |\n",
        targets.len()
    );
    for t in targets {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            t.name,
            t.goal,
            t.shown,
            if t.met { "yes" } else { "**no**" }
        ));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_met_at_its_bound_and_not_past_it() {
        assert!(Target::ratio_at_least("r", 0.85, 0.85).met);
        assert!(!Target::ratio_at_least("r", 0.849, 0.85).met);
        assert!(Target::at_most("m", 40.0, 40.0, "MiB").met);
        assert!(!Target::at_most("m", 40.1, 40.0, "MiB").met);
    }

    #[test]
    fn an_unmeasured_figure_is_null_in_json() {
        assert!(worst(&[]).is_nan());
        assert_eq!(worst(&[3.0, 5.0, 4.0]), 5.0);
        assert_eq!(mib_cell(None), "not measured");
        assert_eq!(mib_cell(Some(2048)), "2.0 MiB");
        let t = Target::ratio_at_least("r", f64::NAN, 0.9);
        assert!(!t.met);
        assert_eq!(t.json()["value"], Value::Null);
    }

    #[test]
    fn the_table_counts_what_was_met() {
        let table = targets_table(&[
            Target::ratio_at_least("a", 0.9, 0.85),
            Target::at_most("b", 50.0, 40.0, "MiB"),
        ]);
        assert!(table.contains("1 of 2 met"), "{table}");
        assert!(
            table.contains("| b | ≤ 40 MiB | 50.00 MiB | **no** |"),
            "{table}"
        );
    }
}
