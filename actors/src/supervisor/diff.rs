//! The difference between two plans: which services to start, change and
//! retire, and networks are reconciled separately, against Docker. Start-up is the diff
//! from an empty plan, so start-up and reload are one code path.

use std::collections::BTreeSet;

use crate::plan::Plan;

/// What applying a new plan over an old one must do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanDiff {
    /// In the new plan only.
    pub added: BTreeSet<String>,
    /// In both, with any difference (the actor decides whether the container changes).
    pub changed: BTreeSet<String>,
    /// In the old plan only.
    pub removed: BTreeSet<String>,
    /// In both and identical: not touched.
    pub unchanged: BTreeSet<String>,
}

impl PlanDiff {
    /// The diff from `old` (nothing at start-up) to `new`.
    pub fn between(old: Option<&Plan>, new: &Plan) -> PlanDiff {
        let mut diff = PlanDiff::default();
        let Some(old) = old else {
            diff.added = new.services.keys().cloned().collect();
            return diff;
        };
        for (name, service) in &new.services {
            match old.services.get(name) {
                None => diff.added.insert(name.clone()),
                Some(before) if before == service => diff.unchanged.insert(name.clone()),
                Some(_) => diff.changed.insert(name.clone()),
            };
        }
        diff.removed = old
            .services
            .keys()
            .filter(|name| !new.services.contains_key(*name))
            .cloned()
            .collect();
        diff
    }

    /// Services the new plan must (re)reconcile.
    pub fn to_reconcile(&self) -> BTreeSet<String> {
        self.added.union(&self.changed).cloned().collect()
    }
}
