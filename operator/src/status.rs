//! Pure computation of a Storefront's status conditions.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::{
    ComponentStatus,
    crd::{CONDITION_DEGRADED, CONDITION_PAUSED, CONDITION_PROGRESSING, CONDITION_READY},
};

/// Something wrong the operator reports as Degraded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// PascalCase reason, e.g. `KafkaUnavailable`.
    pub reason: &'static str,
    /// Human-readable detail.
    pub message: String,
}

/// Set (or replace) one condition, keeping its `lastTransitionTime` when the
/// status did not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" };
    let last_transition_time = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time,
    });
    conditions.sort_by_key(|c| order(&c.type_));
}

fn order(type_: &str) -> usize {
    [
        CONDITION_READY,
        CONDITION_PROGRESSING,
        CONDITION_DEGRADED,
        CONDITION_PAUSED,
    ]
    .iter()
    .position(|t| *t == type_)
    .unwrap_or(usize::MAX)
}

/// Conditions of a reconciled (not paused) Storefront.
pub fn reconciled_conditions(
    previous: &[Condition],
    components: &BTreeMap<String, ComponentStatus>,
    problems: &[Problem],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut c = previous.to_vec();
    let waiting: Vec<String> = components
        .iter()
        .filter(|(_, s)| !s.is_ready())
        .map(|(name, s)| format!("{name} {}/{}", s.ready_replicas, s.desired_replicas))
        .collect();
    set_condition(
        &mut c,
        CONDITION_PAUSED,
        false,
        "Reconciling",
        "",
        generation,
        now,
    );
    match problems.first() {
        Some(first) => {
            let message = problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            set_condition(
                &mut c,
                CONDITION_DEGRADED,
                true,
                first.reason,
                &message,
                generation,
                now,
            );
        }
        None => set_condition(
            &mut c,
            CONDITION_DEGRADED,
            false,
            "AsExpected",
            "",
            generation,
            now,
        ),
    }
    if waiting.is_empty() && !components.is_empty() {
        set_condition(
            &mut c,
            CONDITION_PROGRESSING,
            false,
            "Stable",
            "every component has its desired ready replicas",
            generation,
            now,
        );
    } else {
        set_condition(
            &mut c,
            CONDITION_PROGRESSING,
            true,
            "RollingOut",
            &format!("waiting for ready replicas: {}", waiting.join(", ")),
            generation,
            now,
        );
    }
    match (
        problems.is_empty(),
        waiting.is_empty() && !components.is_empty(),
    ) {
        (true, true) => set_condition(
            &mut c,
            CONDITION_READY,
            true,
            "AllComponentsAvailable",
            "every component is available",
            generation,
            now,
        ),
        (false, _) => set_condition(
            &mut c,
            CONDITION_READY,
            false,
            "Degraded",
            "see the Degraded condition",
            generation,
            now,
        ),
        (true, false) => set_condition(
            &mut c,
            CONDITION_READY,
            false,
            "ComponentsNotReady",
            &format!("not ready: {}", waiting.join(", ")),
            generation,
            now,
        ),
    }
    c
}

/// Conditions of a paused Storefront: Paused is True, the rest is left as it was.
pub fn paused_conditions(
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut c = previous.to_vec();
    set_condition(
        &mut c,
        CONDITION_PAUSED,
        true,
        "Paused",
        "spec.paused is true: the operator leaves every child object as it is",
        generation,
        now,
    );
    c
}

/// Whether a condition of this type has this status.
pub fn is(conditions: &[Condition], type_: &str, status: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == status)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("timestamp"))
    }

    fn comps(list: &[(&str, i32, i32)]) -> BTreeMap<String, ComponentStatus> {
        list.iter()
            .map(|(n, r, d)| {
                (
                    (*n).to_owned(),
                    ComponentStatus {
                        ready_replicas: *r,
                        desired_replicas: *d,
                    },
                )
            })
            .collect()
    }

    fn get<'a>(c: &'a [Condition], type_: &str) -> &'a Condition {
        c.iter()
            .find(|x| x.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_}"))
    }

    #[test]
    fn components_without_ready_pods_are_progressing_and_not_ready() {
        let c = reconciled_conditions(
            &[],
            &comps(&[("gateway", 0, 2), ("auth", 1, 1)]),
            &[],
            Some(3),
            &t(10),
        );
        assert_eq!(get(&c, "Ready").status, "False");
        assert_eq!(get(&c, "Ready").reason, "ComponentsNotReady");
        assert!(get(&c, "Ready").message.contains("gateway 0/2"));
        assert!(!get(&c, "Ready").message.contains("auth"));
        assert_eq!(get(&c, "Progressing").status, "True");
        assert_eq!(get(&c, "Degraded").status, "False");
        assert_eq!(get(&c, "Paused").status, "False");
        assert!(c.iter().all(|x| x.observed_generation == Some(3)));
        let types: Vec<_> = c.iter().map(|x| x.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Progressing", "Degraded", "Paused"]);
    }

    #[test]
    fn all_ready_is_ready_and_stable() {
        let c = reconciled_conditions(&[], &comps(&[("gateway", 2, 2)]), &[], Some(1), &t(10));
        assert_eq!(get(&c, "Ready").status, "True");
        assert_eq!(get(&c, "Progressing").status, "False");
    }

    #[test]
    fn a_problem_degrades_and_unreadies() {
        let p = Problem {
            reason: "KafkaUnavailable",
            message: "Kafka down".into(),
        };
        let c = reconciled_conditions(&[], &comps(&[("gateway", 2, 2)]), &[p], Some(1), &t(10));
        assert_eq!(get(&c, "Degraded").status, "True");
        assert_eq!(get(&c, "Degraded").reason, "KafkaUnavailable");
        assert_eq!(get(&c, "Degraded").message, "Kafka down");
        assert_eq!(get(&c, "Ready").status, "False");
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let first = reconciled_conditions(&[], &comps(&[("gateway", 0, 1)]), &[], Some(1), &t(10));
        let same =
            reconciled_conditions(&first, &comps(&[("gateway", 0, 1)]), &[], Some(2), &t(20));
        assert_eq!(get(&same, "Ready").last_transition_time, t(10));
        assert_eq!(get(&same, "Ready").observed_generation, Some(2));
        let ready =
            reconciled_conditions(&same, &comps(&[("gateway", 1, 1)]), &[], Some(2), &t(30));
        assert_eq!(get(&ready, "Ready").last_transition_time, t(30));
        assert_eq!(get(&ready, "Degraded").last_transition_time, t(10));
    }

    #[test]
    fn paused_sets_paused_and_keeps_the_rest() {
        let before = reconciled_conditions(&[], &comps(&[("gateway", 0, 1)]), &[], Some(1), &t(10));
        let c = paused_conditions(&before, Some(2), &t(20));
        assert_eq!(get(&c, "Paused").status, "True");
        assert_eq!(get(&c, "Paused").last_transition_time, t(20));
        assert_eq!(get(&c, "Ready"), get(&before, "Ready"));
        assert!(is(&c, "Paused", "True"));
    }
}
