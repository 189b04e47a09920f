//! Property tests of the pure parsers of the plan on hostile input: image
//! references and cron schedules never panic; a normalised image reference
//! parses back to the same value; a valid schedule's next fire is after
//! `now`, in UTC and in zones with daylight-saving changes. Bounded: seconds
//! in CI. The same parsers are fuzzed in `fuzz/`.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

use super::{ImageRef, Schedule};

/// Characters that matter to image references.
const IMAGE_TOKENS: &[&str] = &[
    "/",
    ":",
    "@",
    ".",
    "-",
    "_",
    "__",
    "sha256:",
    "sha512:",
    "localhost",
    "docker.io",
    "index.docker.io",
    "ghcr.io",
    "127.0.0.1:5000",
    "library",
    "nginx",
    "A",
    "é",
    "😀",
    " ",
    "0",
    "65535",
    "99999",
    "latest",
];

/// Pieces of cron fields.
const CRON_TOKENS: &[&str] = &[
    "*", "?", "/", ",", "-", "0", "1", "5", "7", "12", "23", "31", "59", "60", "99", "L", "W", "#",
    "SUN", "mon", "JAN", "@daily", "@hourly", "@reboot", "@", " ", "  ", "\t", "é", "2030", "1969",
];

/// `PROPTEST_CASES` overrides the number of cases (a longer local run).
fn config(cases: u32) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

fn text_of(tokens: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(tokens).prop_map(str::to_string),
            1 => any::<char>().prop_map(String::from),
            1 => "[a-z0-9]{1,5}",
        ],
        0..max,
    )
    .prop_map(|parts| parts.concat())
}

/// Mostly valid references: optional registry, path, tag, digest.
fn image_like() -> impl Strategy<Value = String> {
    (
        prop::option::of(prop_oneof![
            Just("localhost".to_string()),
            "[a-z][a-z0-9-]{0,6}(\\.[a-z]{2,4}){1,2}(:[0-9]{1,5})?",
            Just("index.docker.io".to_string()),
        ]),
        prop::collection::vec("[a-z0-9]{1,4}([._-][a-z0-9]{1,3})?", 1..4),
        prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        prop::option::of("[0-9a-f]{64}"),
    )
        .prop_map(|(registry, path, tag, digest)| {
            let mut text = registry.map(|r| format!("{r}/")).unwrap_or_default();
            text.push_str(&path.join("/"));
            if let Some(tag) = tag {
                text.push(':');
                text.push_str(&tag);
            }
            if let Some(digest) = digest {
                text.push_str("@sha256:");
                text.push_str(&digest);
            }
            text
        })
}

/// Mostly valid cron expressions, 5 to 7 fields.
fn cron_like() -> impl Strategy<Value = String> {
    let field = |low: u32, high: u32| {
        prop_oneof![
            Just("*".to_string()),
            (low..=high).prop_map(|n| n.to_string()),
            (low..=high, low..=high).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            (1..=high.max(1)).prop_map(|step| format!("*/{step}")),
            prop::collection::vec(low..=high, 1..4).prop_map(|list| list
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")),
        ]
    };
    (
        prop::option::of(field(0, 59)),
        field(0, 59),
        field(0, 23),
        field(1, 31),
        field(1, 12),
        field(0, 7),
        prop::option::of(prop_oneof![
            Just("*".to_string()),
            (2020u32..2090).prop_map(|y| y.to_string())
        ]),
    )
        .prop_map(|(second, minute, hour, dom, month, dow, year)| {
            let mut fields: Vec<String> = Vec::new();
            if let Some(second) = &second {
                fields.push(second.clone());
            }
            fields.extend([minute, hour, dom, month, dow]);
            if let (Some(_), Some(year)) = (second, year) {
                fields.push(year);
            }
            fields.join(" ")
        })
}

/// An instant between 1990 and 2060.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (631_152_000i64..2_871_763_200).prop_map(|seconds| {
        Utc.timestamp_opt(seconds, 0)
            .single()
            .expect("in chrono's range")
    })
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn image_parser_never_panics(text in text_of(IMAGE_TOKENS, 16)) {
        let _ = ImageRef::parse(&text);
    }

    #[test]
    fn normalised_images_parse_back_to_the_same_value(text in prop_oneof![image_like(), text_of(IMAGE_TOKENS, 10)]) {
        if let Ok(image) = ImageRef::parse(&text) {
            let canonical = image.canonical();
            let again = ImageRef::parse(&canonical);
            prop_assert!(again.is_ok(), "{canonical:?} does not parse: {again:?}");
            let again = again.expect("checked");
            prop_assert_eq!(&again.registry, &image.registry);
            prop_assert_eq!(&again.repository, &image.repository);
            prop_assert_eq!(&again.tag, &image.tag);
            prop_assert_eq!(&again.digest, &image.digest);
            prop_assert_eq!(again.canonical(), canonical);
        }
    }

    #[test]
    fn cron_parser_never_panics(text in text_of(CRON_TOKENS, 14), now in instant()) {
        if let Ok(schedule) = Schedule::parse(&text) {
            if let Some(next) = schedule.next_after(now) {
                prop_assert!(next > now);
            }
        }
    }

    #[test]
    fn a_valid_schedule_fires_after_now(expression in cron_like(), now in instant(), zone in 0usize..4) {
        let Ok(schedule) = Schedule::parse(&expression) else {
            return Ok(());
        };
        let zones = [chrono_tz::UTC, chrono_tz::Europe::Berlin, chrono_tz::America::New_York, chrono_tz::Australia::Lord_Howe];
        let now = now.with_timezone(&zones[zone]);
        if let Some(next) = schedule.next_after(now) {
            prop_assert!(next > now, "{expression}: {next} is not after {now}");
            // And the one after that is later still.
            if let Some(after) = schedule.next_after(next) {
                prop_assert!(after > next, "{expression}: {after} is not after {next}");
            }
        }
    }
}
