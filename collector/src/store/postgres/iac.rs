//! Imported IaC: states with their resources, and the image catalog from Packer manifests.

use std::collections::BTreeMap;

use super::tx::Tx;

use super::to_u64;
use crate::store::{
    HostFacts, IacData, Image, ImportOutcome, ManifestImport, Millis, Resource, Result,
    StateImport, StateInfo, StoreError,
};

pub(super) fn import_state(tx: &mut Tx<'_>, r: &StateImport, now: Millis) -> Result<ImportOutcome> {
    if let Some(serial) = r.serial.filter(|s| i64::try_from(*s).is_err()) {
        return Err(StoreError::Rejected(format!(
            "the state's serial {serial} is out of range (at most {})",
            i64::MAX
        )));
    }
    if let Some(serial) = r.serial
        && !r.lineage.is_empty()
    {
        // Serialize imports of one lineage across collectors: the staleness check and the
        // write must not interleave with another collector's.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&r.lineage],
        )?;
        let newer = tx.query_opt(
            "SELECT name, serial FROM iac_states WHERE lineage = $1 AND serial > $2
             ORDER BY serial DESC LIMIT 1",
            &[&r.lineage, &(serial as i64)],
        )?;
        if let Some(row) = newer {
            let (name, stored): (String, i64) = (row.get(0), row.get(1));
            return Err(StoreError::Rejected(format!(
                "this state is older than the one stored: lineage {} has serial {stored} \
                 stored (as {name:?}), this copy has serial {serial}; pull the current state \
                 (`terraform state pull`) and import that",
                r.lineage
            )));
        }
    }
    let replaced = tx.execute("DELETE FROM iac_resources WHERE state = $1", &[&r.name])?;
    tx.execute(
        "INSERT INTO iac_states (name, source, kind, lineage, serial, terraform_version,
             imported_at, ignored_instances, imported_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (name) DO UPDATE SET source = excluded.source, kind = excluded.kind,
             lineage = excluded.lineage, serial = excluded.serial,
             terraform_version = excluded.terraform_version,
             imported_at = excluded.imported_at, ignored_instances = excluded.ignored_instances,
             imported_by = excluded.imported_by",
        &[
            &r.name,
            &r.source,
            &r.kind,
            &r.lineage,
            &r.serial.map(|s| s as i64),
            &r.terraform_version,
            &now,
            &(r.ignored_instances as i64),
            &r.imported_by,
        ],
    )?;
    const INSERT: &str =
        "INSERT INTO iac_resources (state, address, type, role, key, name, image_id,
             private_ip, private_dns, user_data_sha1, status, template, location)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
    for res in &r.resources {
        tx.execute(
            INSERT,
            &[
                &r.name,
                &res.address,
                &res.resource_type,
                &res.role,
                &res.key,
                &res.name,
                &res.image_id,
                &res.private_ip,
                &res.private_dns,
                &res.user_data_sha1,
                &res.status,
                &res.template,
                &res.location,
            ],
        )
        .map_err(|e| {
            StoreError::Database(format!(
                "storing resource {}: {}",
                res.address,
                super::connect::describe(&e)
            ))
        })?;
    }
    Ok(ImportOutcome {
        stored: r.resources.len() as u64,
        replaced,
    })
}

pub(super) fn import_manifest(
    tx: &mut Tx<'_>,
    r: &ManifestImport,
    now: Millis,
) -> Result<ImportOutcome> {
    // `xmax = 0` tells an inserted row from an updated one.
    const UPSERT: &str =
        "INSERT INTO images (region, image_id, build, builder_type, run_uuid, build_time,
             baseline_id, source, imported_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (region, image_id) DO UPDATE SET build = excluded.build,
             builder_type = excluded.builder_type, run_uuid = excluded.run_uuid,
             build_time = excluded.build_time,
             baseline_id = CASE WHEN excluded.baseline_id = '' THEN images.baseline_id
                                ELSE excluded.baseline_id END,
             source = excluded.source, imported_at = excluded.imported_at
         RETURNING xmax = 0";
    let mut outcome = ImportOutcome::default();
    for image in &r.images {
        let inserted: bool = tx
            .query_one(
                UPSERT,
                &[
                    &image.region,
                    &image.image_id,
                    &image.build,
                    &image.builder_type,
                    &image.run_uuid,
                    &image.build_time,
                    &image.baseline_id,
                    &r.source,
                    &now,
                ],
            )?
            .get(0);
        if !inserted {
            outcome.replaced += 1;
        }
        outcome.stored += 1;
    }
    Ok(outcome)
}

pub(super) fn iac(tx: &mut Tx<'_>) -> Result<IacData> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let resources: Vec<(String, Resource)> = tx
        .query(
            "SELECT state, address, type, role, key, name, image_id, private_ip, private_dns,
                 user_data_sha1, status, template, location
             FROM iac_resources ORDER BY state, address",
            &[],
        )?
        .iter()
        .map(|row| {
            (
                row.get(0),
                Resource {
                    address: row.get(1),
                    resource_type: row.get(2),
                    role: row.get(3),
                    key: row.get(4),
                    name: row.get(5),
                    image_id: row.get(6),
                    private_ip: row.get(7),
                    private_dns: row.get(8),
                    user_data_sha1: row.get(9),
                    status: row.get(10),
                    template: row.get(11),
                    location: row.get(12),
                },
            )
        })
        .collect();
    for (state, _) in &resources {
        *counts.entry(state.clone()).or_default() += 1;
    }
    let states = tx
        .query(
            "SELECT name, source, kind, lineage, serial, terraform_version, imported_at,
                 imported_by
             FROM iac_states ORDER BY name",
            &[],
        )?
        .iter()
        .map(|row| {
            let name: String = row.get(0);
            StateInfo {
                resources: counts.get(&name).copied().unwrap_or(0),
                name,
                source: row.get(1),
                kind: row.get(2),
                lineage: row.get(3),
                serial: row.get::<_, Option<i64>>(4).map(to_u64),
                terraform_version: row.get(5),
                imported_at: row.get(6),
                imported_by: row.get(7),
            }
        })
        .collect();
    let images = tx
        .query(
            "SELECT region, image_id, build, builder_type, run_uuid, build_time, baseline_id
             FROM images ORDER BY image_id, region",
            &[],
        )?
        .iter()
        .map(|row| Image {
            region: row.get(0),
            image_id: row.get(1),
            build: row.get(2),
            builder_type: row.get(3),
            run_uuid: row.get(4),
            build_time: row.get(5),
            baseline_id: row.get(6),
        })
        .collect();
    Ok(IacData {
        states,
        resources,
        images,
    })
}

pub(super) fn host_facts(tx: &mut Tx<'_>) -> Result<Vec<HostFacts>> {
    Ok(tx
        .query(
            "SELECT host, hostname, instance_id, image_id, region, private_ip, machine_id_hash,
                 user_data_sha1, tags, baseline_id, last_seen, cloud
             FROM hosts ORDER BY host",
            &[],
        )?
        .iter()
        .map(|row| HostFacts {
            host: row.get(0),
            hostname: row.get(1),
            instance_id: row.get(2),
            image_id: row.get(3),
            region: row.get(4),
            private_ip: row.get(5),
            machine_id_hash: row.get(6),
            user_data_sha1: row.get(7),
            // Written by the hello from a map: a row that does not parse has no tags.
            tags: serde_json::from_str(row.get(8)).unwrap_or_default(),
            baseline_id: row.get(9),
            last_seen: row.get(10),
            cloud: row.get(11),
        })
        .collect())
}

/// When each host was last heard from.
pub(super) fn last_seen(tx: &mut Tx<'_>) -> Result<Vec<(String, Millis)>> {
    Ok(tx
        .query("SELECT host, last_seen FROM hosts ORDER BY host", &[])?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}
