//! Following what every collector sharing the database commits, for the live feed (`watch`
//! on any collector sees the events ingested through every one).
//!
//! A commit that stored events notifies [`CHANNEL`]; each collector listens on a connection of
//! its own and then reads the `history` rows (one per write) it has not published yet. Which rows those are
//! cannot be told by `id` alone: identities are handed out in insertion order, not commit
//! order, so a row with a lower `id` may commit after one with a higher `id` was read, and
//! be skipped forever. So each row records its transaction (`history.tx`, an `xid8`), and the
//! follower reads by `(tx, id)` only the rows of transactions older than the oldest one still
//! running (`pg_snapshot_xmin`): those are final, committed or rolled back, and every
//! transaction that starts later gets a higher id. Its cursor then moves to that horizon.
//! A transaction running long holds the feed back for as long; ours are short.
//!
//! Notifications only wake the follower: it also reads every [`POLL`], so a notification lost
//! with a connection delays nothing for long. The cursor survives reconnections (events
//! committed meanwhile are published late, not lost); a follower that falls behind the feed's
//! buffer is told so by the feed, as with SQLite.

use std::time::Duration;

use postgres::{Client, fallible_iterator::FallibleIterator};
use tokio_util::sync::CancellationToken;

use super::history;
use super::tx::Manager;
use crate::store::{Feed, Result, Source};

/// The channel commits that stored events notify.
pub(super) const CHANNEL: &str = "driftwatch_events";
/// How often the follower reads without a notification.
const POLL: Duration = Duration::from_millis(500);
/// Rows read per query.
const PAGE: i64 = 1000;

/// Where the follower is: every event of a transaction below `tx`, and of `tx` up to `id`,
/// has been published. (`tx` as text: the client has no `xid8` type; the server casts.)
#[derive(Clone, Debug)]
struct Cursor {
    tx: String,
    id: i64,
}

/// Follows commits until `stop`, publishing stream events on `feed` (as the group writer of a
/// database only one process writes publishes them). Runs on a thread of its own.
pub(super) fn follow(manager: Manager, feed: Feed, stop: CancellationToken) {
    let mut cursor = None;
    let mut failing = false;
    while !stop.is_cancelled() {
        let result = manager
            .client()
            .and_then(|mut client| {
                client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
                Ok(client)
            })
            .map_err(crate::store::StoreError::from)
            .and_then(|mut client| {
                if failing {
                    tracing::info!("Following the database's commits again.");
                    failing = false;
                }
                listen(&mut client, &mut cursor, &feed, &stop)
            });
        if let Err(error) = result {
            if !failing {
                tracing::warn!(%error, "Lost the database connection that follows other collectors' commits; reconnecting.");
                failing = true;
            }
            // Whatever broke, wait a moment before the next attempt.
            for _ in 0..4 {
                if stop.is_cancelled() {
                    return;
                }
                std::thread::sleep(POLL / 2);
            }
        }
    }
}

/// Reads and waits on one connection until it fails or `stop`.
fn listen(
    client: &mut Client,
    cursor: &mut Option<Cursor>,
    feed: &Feed,
    stop: &CancellationToken,
) -> Result<()> {
    while !stop.is_cancelled() {
        catch_up(client, cursor, feed)?;
        // Any notification wakes; the ones queued behind it are read at once and dropped
        // (one read answers them all).
        let mut notifications = client.notifications();
        if notifications.timeout_iter(POLL).next()?.is_some() {
            while notifications.iter().next()?.is_some() {}
        }
    }
    Ok(())
}

/// Publishes every final event after `cursor` and moves it to the horizon.
fn catch_up(client: &mut Client, cursor: &mut Option<Cursor>, feed: &Feed) -> Result<()> {
    let horizon: String = client
        .query_one("SELECT pg_snapshot_xmin(pg_current_snapshot())::text", &[])?
        .get(0);
    let Some(at) = cursor.as_mut() else {
        // From now on: what was final before the follower started is history, not news.
        *cursor = Some(Cursor { tx: horizon, id: 0 });
        return Ok(());
    };
    if !feed.is_followed() {
        *at = Cursor { tx: horizon, id: 0 };
        return Ok(());
    }
    loop {
        let rows = client.query(
            &format!(
                "SELECT {}, tx::text, id FROM history
                 WHERE (tx, id) > ($1::text::xid8, $2) AND tx < $3::text::xid8
                 ORDER BY tx, id LIMIT $4",
                history::COLUMNS
            ),
            &[&at.tx, &at.id, &horizon, &PAGE],
        )?;
        for row in &rows {
            // As the writer publishes: stream events (a snapshot's differences are history).
            if row.get::<_, &str>(2) != Source::Stream.as_str() {
                continue;
            }
            for entry in history::entries(row, |_, _| true)? {
                feed.publish(entry?);
            }
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == PAGE => {
                *at = Cursor {
                    tx: last.get(4),
                    id: last.get(5),
                };
            }
            _ => {
                *at = Cursor { tx: horizon, id: 0 };
                return Ok(());
            }
        }
    }
}
