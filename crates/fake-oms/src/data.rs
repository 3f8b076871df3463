//! Synthetic customers (Turkish names, nulls, ties) and records of any resource, and bulk
//! changes of any store, for demos, tests and benchmarks.

use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::customers::{CUSTOMERS, FakeCustomer};
use super::record::Record;
use super::resource::Resource;
use super::store::{Row, Store};

const FIRST_NAMES: &[&str] = &[
    "Ali", "Ayşe", "Mehmet", "Fatma", "Mustafa", "Emine", "Ahmet", "Hatice", "Hüseyin", "Zeynep",
    "İbrahim", "Elif", "İsmail", "Özlem", "Şükrü", "Çağla", "Gökhan", "Tuğçe", "İpek", "Ömer",
    "Gülşen", "Barış", "Büşra", "Doğan", "Ece", "Burak", "Cem", "Deniz", "Seda", "Ufuk", "Yağmur",
    "Umut", "Şule", "Çiğdem", "Gizem", "Oğuz", "Irmak", "Ilgın", "Nazlı", "Kübra", "Sıla", "Ceyda",
    "Tolga", "Ümit", "Görkem", "Işıl",
];

const LAST_NAMES: &[&str] = &[
    "Yılmaz",
    "Kaya",
    "Demir",
    "Şahin",
    "Çelik",
    "Yıldız",
    "Yıldırım",
    "Öztürk",
    "Aydın",
    "Özdemir",
    "Arslan",
    "Doğan",
    "Kılıç",
    "Aslan",
    "Çetin",
    "Kara",
    "Koç",
    "Kurt",
    "Özkan",
    "Şimşek",
    "Polat",
    "Güneş",
    "Erdem",
    "Çakır",
    "Uğurlu",
    "Gündüz",
    "Işık",
    "Türkmen",
    "Ağaoğlu",
    "Akgül",
    "Bulut",
    "Ekinci",
];

const DOMAINS: &[&str] = &[
    "gmail.com",
    "hotmail.com",
    "yahoo.com",
    "outlook.com",
    "yandex.com.tr",
    "akinon.com",
];

/// Folds Turkish letters to ASCII (`İ`→`I`, `ı`→`i`, `ğ`→`g`, `ş`→`s`, `ç`→`c`, `ö`→`o`,
/// `ü`→`u`); other characters are kept.
pub fn ascii_fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'İ' => 'I',
            'ı' => 'i',
            'Ğ' => 'G',
            'ğ' => 'g',
            'Ş' => 'S',
            'ş' => 's',
            'Ç' => 'C',
            'ç' => 'c',
            'Ö' => 'O',
            'ö' => 'o',
            'Ü' => 'U',
            'ü' => 'u',
            c => c,
        })
        .collect()
}

fn micros(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t).expect("in range")
}

/// 2019-01-01T00:00:00Z in microseconds.
const START: i64 = 1_546_300_800_000_000;
/// Four years of sign-ups.
const SPAN: i64 = 4 * 365 * 86_400 * 1_000_000;

pub(crate) fn person(rng: &mut StdRng, id: i64, created: i64, modified: i64) -> FakeCustomer {
    let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
    let last =
        (!rng.random_ratio(1, 20)).then(|| LAST_NAMES[rng.random_range(0..LAST_NAMES.len())]);
    let domain = DOMAINS[rng.random_range(0..DOMAINS.len())];
    let local = match last {
        Some(l) => format!("{}.{}{id}", ascii_fold(first), ascii_fold(l)),
        None => format!("{}{id}", ascii_fold(first)),
    };
    let email = format!("{}@{domain}", local.to_lowercase());
    let phone = (!rng.random_ratio(1, 4)).then(|| {
        format!(
            "05{}{:08}",
            rng.random_range(3..=5u8),
            rng.random_range(0..100_000_000u32)
        )
    });
    let erp = rng.random_ratio(2, 5).then(|| format!("ERP-{id:07}"));
    let omnitron_id = (!rng.random_ratio(1, 50)).then_some(id + 50_000);
    let channel = match rng.random_range(0..10u8) {
        0..=5 => 1,
        6..=8 => 2,
        _ => 3,
    };
    FakeCustomer {
        id,
        created_date: micros(created),
        modified_date: micros(modified),
        omnitron_id,
        email: Some(email),
        first_name: Some(first.to_owned()),
        last_name: last.map(str::to_owned),
        phone_number: phone,
        erp_code: erp,
        channel: Some(channel),
        extra: serde_json::Map::new(),
        raw_override: None,
    }
}

/// `n` deterministic customers for `seed`, in id order.
///
/// - ids ascend from 1 with occasional gaps (deleted customers);
/// - `created_date` ascends with id over 2019–2022; most rows have `modified_date` a few
///   microseconds after creation, 30% a random later one (so modified order ≠ id order);
/// - about every 300 rows a "bulk update" gives a run of 1–2000 consecutive customers one
///   shared `modified_date` (often whole seconds), and ~3% of other timestamps have zero
///   microseconds;
/// - Turkish names (İ, ı, ğ, ş, ç, ö, ü), unique ASCII-folded emails
///   (`first.last<id>@domain`), ~25% null phones, ~60% null ERP codes, ~5% null last names,
///   ~2% null `omnitron_id`, channels 1–3.
pub fn synthetic_customers(n: usize, seed: u64) -> Vec<FakeCustomer> {
    synthetic_rows(&CUSTOMERS, n, seed)
}

/// `n` deterministic records of `resource` for `seed`, in id order, with the ids, instants and
/// bulk-update ties of [`synthetic_customers`]; the other fields random values of their kind
/// (`null` now and then where nullable; a field named `created_date` the creation instant).
pub fn synthetic_records(resource: &'static Resource, n: usize, seed: u64) -> Vec<Record> {
    synthetic_rows(resource, n, seed)
}

fn synthetic_rows<R: Row>(resource: &'static Resource, n: usize, seed: u64) -> Vec<R> {
    let mut rng = StdRng::seed_from_u64(seed);
    let avg_gap = (SPAN / n.max(1) as i64).max(2);
    let end = START + SPAN + 30 * 86_400 * 1_000_000;
    let mut out: Vec<R> = Vec::with_capacity(n);
    let mut created_at: Vec<i64> = Vec::with_capacity(n);
    let mut id = 0i64;
    let mut t = START;
    for _ in 0..n {
        id += if rng.random_ratio(1, 50) {
            rng.random_range(2..=6)
        } else {
            1
        };
        t += rng.random_range(1..=2 * avg_gap);
        let created = t;
        let mut modified = if rng.random_ratio(3, 10) {
            rng.random_range(created..end.max(created + 1))
        } else {
            created + rng.random_range(5..60)
        };
        if rng.random_ratio(3, 100) {
            modified -= modified.rem_euclid(1_000_000);
        }
        let created = created.min(modified);
        out.push(R::synthetic(
            resource,
            &mut rng,
            id,
            micros(created),
            micros(modified),
        ));
        created_at.push(created);
    }
    // Bulk updates: runs of consecutive customers share one modified_date.
    let mut i = 0usize;
    loop {
        i += rng.random_range(1..=600);
        if i >= n {
            break;
        }
        let r: f64 = rng.random();
        let len = if r < 0.7 {
            rng.random_range(1..=20)
        } else if r < 0.95 {
            rng.random_range(21..=300)
        } else {
            rng.random_range(301..=2000)
        };
        let stop = (i + len).min(n);
        let latest_created = created_at[stop - 1];
        let mut at = latest_created + rng.random_range(1_000_000..7 * 86_400 * 1_000_000);
        if rng.random_bool(0.5) {
            at -= at.rem_euclid(1_000_000);
        }
        let at = micros(at);
        for c in &mut out[i..stop] {
            c.set_modified_date(at);
        }
        i = stop;
    }
    out
}

/// Sets `modified_date = at` on every id present (a bulk update: they all tie). Returns how
/// many were changed.
pub fn bulk_update<R: Row>(store: &mut Store<R>, ids: &[i64], at: DateTime<Utc>) -> usize {
    ids.iter().filter(|&&id| store.touch(id, at)).count()
}

/// Changes `round(fraction * len)` random rows: one field ([`Row::edit`]: a customer's phone
/// number) and a new `modified_date` after the store's current maximum (increasing, with some
/// ties and some whole-second values). Returns the changed ids, sorted.
pub fn touch_random<R: Row>(store: &mut Store<R>, fraction: f64, seed: u64) -> Vec<i64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let all: Vec<i64> = store.ids().collect();
    let k = ((fraction.clamp(0.0, 1.0) * all.len() as f64).round() as usize).min(all.len());
    let mut picked: Vec<i64> = rand::seq::index::sample(&mut rng, all.len(), k)
        .into_iter()
        .map(|i| all[i])
        .collect();
    let mut t = next_after(store);
    for (n, &id) in picked.iter().enumerate() {
        if n > 0 && !rng.random_ratio(1, 10) {
            t += TimeDelta::microseconds(rng.random_range(1..5_000));
            if rng.random_ratio(1, 50) {
                t = t + TimeDelta::seconds(1)
                    - TimeDelta::microseconds(t.timestamp_subsec_micros().into());
            }
        }
        store.update(id, |c| {
            c.set_modified_date(t);
            c.edit(&mut rng);
        });
    }
    picked.sort_unstable();
    picked
}

/// Adds `count` new synthetic rows ([`Row::synthetic`]) with ids after the current maximum and
/// `modified_date`s after the current maximum. Returns their ids.
pub fn insert_new<R: Row>(store: &mut Store<R>, count: usize, seed: u64) -> Vec<i64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut id = store.max_id().unwrap_or(0);
    let mut t = next_after(store).timestamp_micros();
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        id += 1;
        t += rng.random_range(1..2_000_000);
        let modified = t + rng.random_range(5..60);
        let row = R::synthetic(store.resource(), &mut rng, id, micros(t), micros(modified));
        store.upsert(row);
        ids.push(id);
    }
    ids
}

/// One second after the latest `modified_date` (or now for an empty store).
fn next_after<R: Row>(store: &Store<R>) -> DateTime<Utc> {
    store
        .max_modified_date()
        .map_or_else(Utc::now, |m| m + TimeDelta::seconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn synthetic_data_properties() {
        let v = synthetic_customers(20_000, 1);
        assert_eq!(v.len(), 20_000);
        assert!(v.windows(2).all(|w| w[0].id < w[1].id));
        assert!(v.windows(2).any(|w| w[1].id - w[0].id > 1), "gaps");
        let emails: HashSet<&str> = v.iter().map(|c| c.email.as_deref().unwrap()).collect();
        assert_eq!(emails.len(), v.len());
        assert!(emails.iter().all(|e| e.is_ascii()));
        let mut ties: HashMap<DateTime<Utc>, usize> = HashMap::new();
        for c in &v {
            *ties.entry(c.modified_date).or_default() += 1;
            assert!(c.created_date <= c.modified_date);
            assert!((1..=3).contains(&c.channel.unwrap()));
        }
        let biggest = ties.values().copied().max().unwrap();
        assert!(biggest >= 20, "a sizeable tie group, got {biggest}");
        assert!(ties.values().filter(|&&n| n > 1).count() > 20);
        assert!(
            v.iter()
                .any(|c| c.modified_date.timestamp_subsec_micros() == 0)
        );
        assert!(
            v.iter()
                .any(|c| c.modified_date.timestamp_subsec_micros() != 0)
        );
        let names: String = v
            .iter()
            .flat_map(|c| [c.first_name.clone(), c.last_name.clone()])
            .flatten()
            .collect();
        for ch in ['İ', 'ı', 'ğ', 'ş', 'ç', 'ö', 'ü', 'Ş', 'Ç', 'Ö', 'Ü'] {
            assert!(names.contains(ch), "{ch}");
        }
        assert!(v.iter().any(|c| c.phone_number.is_none()));
        assert!(v.iter().any(|c| c.erp_code.is_none()));
        assert!(v.iter().any(|c| c.erp_code.is_some()));
        assert!(v.iter().any(|c| c.last_name.is_none()));
        assert_eq!(synthetic_customers(500, 9), synthetic_customers(500, 9));
        assert_ne!(synthetic_customers(500, 9), synthetic_customers(500, 10));
        assert_eq!(
            ascii_fold("İpek Yılmaz Tuğçe Şükrü Çağla Öztürk Güneş"),
            "Ipek Yilmaz Tugce Sukru Cagla Ozturk Gunes"
        );
    }

    #[test]
    fn changes_come_after_the_current_maximum() {
        let mut s = Store::from_customers(synthetic_customers(1000, 3));
        let before = s.max_modified_date().unwrap();
        let changed = touch_random(&mut s, 0.01, 4);
        assert_eq!(changed.len(), 10);
        for id in &changed {
            assert!(s.get(*id).unwrap().modified_date > before);
        }
        let max_id = s.max_id().unwrap();
        let new = insert_new(&mut s, 5, 5);
        assert_eq!(new, (max_id + 1..=max_id + 5).collect::<Vec<_>>());
        assert_eq!(s.len(), 1005);
        let at = s.max_modified_date().unwrap() + TimeDelta::seconds(5);
        assert_eq!(bulk_update(&mut s, &[1, 2, 999_999], at), 2);
        assert_eq!(s.max_modified_date(), Some(at));
    }
}
