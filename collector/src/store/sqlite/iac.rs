//! Imported IaC: states with their resources, and the image catalog from Packer manifests.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension as _, params};

use super::{Context as _, to_u64};
use crate::store::{
    HostFacts, IacData, Image, ImportOutcome, ManifestImport, Millis, Resource, Result,
    StateImport, StateInfo, StoreError,
};

pub(super) fn import_state(tx: &Connection, r: &StateImport, now: Millis) -> Result<ImportOutcome> {
    const WHAT: &str = "importing a state";
    // Serials are stored as SQL integers; one past i64 would wrap to a negative and make every
    // stored state look newer.
    if let Some(serial) = r.serial.filter(|s| i64::try_from(*s).is_err()) {
        return Err(StoreError::Rejected(format!(
            "the state's serial {serial} is out of range (at most {})",
            i64::MAX
        )));
    }
    if let Some(serial) = r.serial
        && !r.lineage.is_empty()
    {
        let newer: Option<(String, i64)> = tx
            .query_row(
                "SELECT name, serial FROM iac_states WHERE lineage = ?1 AND serial > ?2
                 ORDER BY serial DESC LIMIT 1",
                params![r.lineage, serial as i64],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .context(WHAT)?;
        if let Some((name, stored)) = newer {
            return Err(StoreError::Rejected(format!(
                "this state is older than the one stored: lineage {} has serial {stored} \
                 stored (as {name:?}), this copy has serial {serial}; pull the current state \
                 (`terraform state pull`) and import that",
                r.lineage
            )));
        }
    }
    let replaced = tx
        .execute("DELETE FROM iac_resources WHERE state = ?1", [&r.name])
        .context(WHAT)?;
    tx.execute(
        "INSERT INTO iac_states (name, source, kind, lineage, serial, terraform_version,
             imported_at, ignored_instances, imported_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (name) DO UPDATE SET source = excluded.source, kind = excluded.kind,
             lineage = excluded.lineage, serial = excluded.serial,
             terraform_version = excluded.terraform_version,
             imported_at = excluded.imported_at, ignored_instances = excluded.ignored_instances,
             imported_by = excluded.imported_by",
        params![
            r.name,
            r.source,
            r.kind,
            r.lineage,
            r.serial.map(|s| s as i64),
            r.terraform_version,
            now,
            r.ignored_instances as i64,
            r.imported_by
        ],
    )
    .context(WHAT)?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO iac_resources (state, address, type, role, key, name, image_id,
                 private_ip, private_dns, user_data_sha1, status, template, location)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .context(WHAT)?;
    for res in &r.resources {
        insert
            .execute(params![
                r.name,
                res.address,
                res.resource_type,
                res.role,
                res.key,
                res.name,
                res.image_id,
                res.private_ip,
                res.private_dns,
                res.user_data_sha1,
                res.status,
                res.template,
                res.location
            ])
            .with_context(|| format!("storing resource {}", res.address))?;
    }
    Ok(ImportOutcome {
        stored: r.resources.len() as u64,
        replaced: replaced as u64,
    })
}

pub(super) fn import_manifest(
    tx: &Connection,
    r: &ManifestImport,
    now: Millis,
) -> Result<ImportOutcome> {
    const WHAT: &str = "importing a manifest";
    let mut exists = tx
        .prepare_cached("SELECT 1 FROM images WHERE region = ?1 AND image_id = ?2")
        .context(WHAT)?;
    let mut upsert = tx
        .prepare_cached(
            "INSERT INTO images (region, image_id, build, builder_type, run_uuid, build_time,
                 baseline_id, source, imported_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (region, image_id) DO UPDATE SET build = excluded.build,
                 builder_type = excluded.builder_type, run_uuid = excluded.run_uuid,
                 build_time = excluded.build_time,
                 baseline_id = CASE WHEN excluded.baseline_id = '' THEN images.baseline_id
                                    ELSE excluded.baseline_id END,
                 source = excluded.source, imported_at = excluded.imported_at",
        )
        .context(WHAT)?;
    let mut outcome = ImportOutcome::default();
    for image in &r.images {
        if exists
            .exists(params![image.region, image.image_id])
            .context(WHAT)?
        {
            outcome.replaced += 1;
        }
        upsert
            .execute(params![
                image.region,
                image.image_id,
                image.build,
                image.builder_type,
                image.run_uuid,
                image.build_time,
                image.baseline_id,
                r.source,
                now
            ])
            .with_context(|| format!("storing image {}", image.image_id))?;
        outcome.stored += 1;
    }
    Ok(outcome)
}

pub(super) fn iac(conn: &Connection) -> rusqlite::Result<IacData> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let resources = conn
        .prepare_cached(
            "SELECT state, address, type, role, key, name, image_id, private_ip, private_dns,
                 user_data_sha1, status, template, location
             FROM iac_resources ORDER BY state, address",
        )?
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                Resource {
                    address: row.get(1)?,
                    resource_type: row.get(2)?,
                    role: row.get(3)?,
                    key: row.get(4)?,
                    name: row.get(5)?,
                    image_id: row.get(6)?,
                    private_ip: row.get(7)?,
                    private_dns: row.get(8)?,
                    user_data_sha1: row.get(9)?,
                    status: row.get(10)?,
                    template: row.get(11)?,
                    location: row.get(12)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (state, _) in &resources {
        *counts.entry(state.clone()).or_default() += 1;
    }
    let states = conn
        .prepare_cached(
            "SELECT name, source, kind, lineage, serial, terraform_version, imported_at,
                 imported_by
             FROM iac_states ORDER BY name",
        )?
        .query_map([], |row| {
            let name: String = row.get(0)?;
            Ok(StateInfo {
                resources: counts.get(&name).copied().unwrap_or(0),
                name,
                source: row.get(1)?,
                kind: row.get(2)?,
                lineage: row.get(3)?,
                serial: row.get::<_, Option<i64>>(4)?.map(to_u64),
                terraform_version: row.get(5)?,
                imported_at: row.get(6)?,
                imported_by: row.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let images = conn
        .prepare_cached(
            "SELECT region, image_id, build, builder_type, run_uuid, build_time, baseline_id
             FROM images ORDER BY image_id, region",
        )?
        .query_map([], |row| {
            Ok(Image {
                region: row.get(0)?,
                image_id: row.get(1)?,
                build: row.get(2)?,
                builder_type: row.get(3)?,
                run_uuid: row.get(4)?,
                build_time: row.get(5)?,
                baseline_id: row.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(IacData {
        states,
        resources,
        images,
    })
}

pub(super) fn host_facts(conn: &Connection) -> rusqlite::Result<Vec<HostFacts>> {
    conn.prepare_cached(
        "SELECT host, hostname, instance_id, image_id, region, private_ip, machine_id_hash,
             user_data_sha1, tags, baseline_id, last_seen, cloud
         FROM hosts ORDER BY host",
    )?
    .query_map([], |row| {
        let tags: String = row.get(8)?;
        Ok(HostFacts {
            host: row.get(0)?,
            hostname: row.get(1)?,
            instance_id: row.get(2)?,
            image_id: row.get(3)?,
            region: row.get(4)?,
            private_ip: row.get(5)?,
            machine_id_hash: row.get(6)?,
            user_data_sha1: row.get(7)?,
            // Written by the hello from a map: a row that does not parse has no tags.
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            baseline_id: row.get(9)?,
            last_seen: row.get(10)?,
            cloud: row.get(11)?,
        })
    })?
    .collect()
}
