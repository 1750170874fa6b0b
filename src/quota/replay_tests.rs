use super::*;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

fn reserved(reserve: Reserve<'_>) -> Reservation<'_> {
    match reserve {
        Reserve::Reserved(r) => r,
        Reserve::Used => panic!("the key was free"),
    }
}

#[test]
fn a_kept_record_refuses_its_key_for_its_ttl_then_expires() {
    let records = ReplayRecords::new();
    let t0 = Instant::now();
    reserved(records.reserve_at("sig", t0)).keep_at(30, t0);
    assert!(matches!(
        records.reserve_at("sig", t0 + Duration::from_secs(30)),
        Reserve::Used
    ));
    assert!(records.contains_at("sig", t0 + Duration::from_secs(30)));
    // Other keys are unaffected.
    reserved(records.reserve_at("other", t0)).keep_at(30, t0);
    let later = t0 + Duration::from_secs(32);
    assert!(!records.contains_at("sig", later));
    assert!(!records.contains_at("other", later));
    reserved(records.reserve_at("sig", later)).keep_at(30, later);
    assert!(records.contains_at("sig", later));
    assert_eq!(records.dropped(), 0);
}

#[test]
fn a_reservation_dropped_without_keep_frees_the_key() {
    let records = ReplayRecords::new();
    let held = reserved(records.reserve("sig"));
    assert!(matches!(records.reserve("sig"), Reserve::Used), "held");
    drop(held);
    assert!(!records.contains("sig"));
    assert!(records.is_empty());
    reserved(records.reserve("sig")).keep(60);
    assert!(records.contains("sig"));
}

#[test]
fn a_full_set_drops_the_records_closest_to_expiry_and_counts_them() {
    let records = ReplayRecords::with_capacity(SHARDS * 10);
    let t0 = Instant::now();
    // The first 1,000 expire sooner than the next 1,000.
    for i in 0..1_000 {
        reserved(records.reserve_at(&format!("early{i}"), t0)).keep_at(100, t0);
    }
    for i in 0..1_000 {
        reserved(records.reserve_at(&format!("late{i}"), t0)).keep_at(200, t0);
    }
    assert!(records.len() <= SHARDS * 10);
    assert_eq!(records.dropped(), (2_000 - records.len()) as u64);
    let late_kept = (0..1_000)
        .filter(|i| records.contains_at(&format!("late{i}"), t0))
        .count();
    let early_kept = (0..1_000)
        .filter(|i| records.contains_at(&format!("early{i}"), t0))
        .count();
    assert_eq!(late_kept + early_kept, records.len());
    // Keys spread unevenly over shards, but in each full shard the early ones went first.
    assert!(
        late_kept > 9 * early_kept,
        "late {late_kept}, early {early_kept}"
    );
    // Expired records are not counted as dropped when they make room.
    let dropped_before = records.dropped();
    let later = t0 + Duration::from_secs(500);
    for i in 0..1_000 {
        reserved(records.reserve_at(&format!("new{i}"), later)).keep_at(100, later);
    }
    assert_eq!(
        records.dropped() - dropped_before,
        (1_000 - records.len()) as u64
    );
}

#[test]
fn of_many_concurrent_copies_of_a_key_exactly_one_is_reserved() {
    let records = Arc::new(ReplayRecords::new());
    for round in 0..50 {
        let key = format!("sig{round}");
        let winners = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (records, winners, key) =
                    (Arc::clone(&records), Arc::clone(&winners), key.clone());
                std::thread::spawn(move || {
                    if let Reserve::Reserved(r) = records.reserve(&key) {
                        winners.fetch_add(1, Ordering::SeqCst);
                        r.keep(60);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(winners.load(Ordering::SeqCst), 1, "round {round}");
    }
    assert_eq!(records.len(), 50);
}
