//! The SQLite registry: one file, WAL mode, one connection behind a mutex. Calls run on
//! tokio's blocking pool so a slow disk never stalls the async workers.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tidemark_core::{DeviceId, Role};

use super::{
    DeviceRecord, InviteRecord, InviteRefusal, Registration, Registry, RegistryError,
    RegistryResult, SpaceRecord, UploadRecord,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS spaces (
    id TEXT PRIMARY KEY,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    space TEXT NOT NULL REFERENCES spaces(id),
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (space, user_id)
);
CREATE INDEX IF NOT EXISTS members_by_user ON members(user_id);
CREATE TABLE IF NOT EXISTS invites (
    code_hash TEXT PRIMARY KEY,
    space TEXT NOT NULL REFERENCES spaces(id),
    role TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    max_uses INTEGER NOT NULL,
    uses INTEGER NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS challenges (
    challenge TEXT PRIMARY KEY,
    space TEXT NOT NULL,
    user_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    space TEXT NOT NULL REFERENCES spaces(id),
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    sdk_version TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    last_push INTEGER,
    revoked_at INTEGER,
    certificate BLOB NOT NULL,
    certificate_expires_at INTEGER NOT NULL,
    PRIMARY KEY (space, id)
);
CREATE TABLE IF NOT EXISTS uploads (
    space TEXT NOT NULL,
    object_key TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (space, object_key)
);
";

/// The registry in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteRegistry {
    connection: Arc<Mutex<Connection>>,
}

impl SqliteRegistry {
    /// Opens (creating if needed) the registry file at `path`.
    pub fn open(path: &Path) -> RegistryResult<SqliteRegistry> {
        let connection = Connection::open(path)
            .map_err(|e| RegistryError(format!("cannot open registry {}: {e}", path.display())))?;
        SqliteRegistry::init(connection)
    }

    /// A registry that lives in memory only (for tests).
    pub fn in_memory() -> RegistryResult<SqliteRegistry> {
        SqliteRegistry::init(Connection::open_in_memory().map_err(to_error)?)
    }

    fn init(connection: Connection) -> RegistryResult<SqliteRegistry> {
        // WAL with NORMAL sync: commits are atomic and survive a crash of the process; a power
        // cut may lose the last moments, which only costs sessions and device "last seen".
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(to_error)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(to_error)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(to_error)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(to_error)?;
        connection.execute_batch(SCHEMA).map_err(to_error)?;
        Ok(SqliteRegistry {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    async fn call<T, F>(&self, f: F) -> RegistryResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut connection).map_err(to_error)
        })
        .await
        .map_err(|e| RegistryError(format!("registry task failed: {e}")))?
    }
}

fn to_error(error: rusqlite::Error) -> RegistryError {
    RegistryError(error.to_string())
}

fn role_from_sql(text: String) -> rusqlite::Result<Role> {
    text.parse().map_err(|e: tidemark_core::ParseRoleError| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn device_from_sql(text: String) -> rusqlite::Result<DeviceId> {
    text.parse()
        .map_err(|e: tidemark_core::ParseDeviceIdError| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

fn ms(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn sql_ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

const DEVICE_COLUMNS: &str = "space, id, user_id, name, sdk_version, created_at, last_seen, \
     last_push, revoked_at, certificate, certificate_expires_at";

fn device_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        space: row.get(0)?,
        id: device_from_sql(row.get(1)?)?,
        user: row.get(2)?,
        name: row.get(3)?,
        sdk_version: row.get(4)?,
        created_at: ms(row.get(5)?),
        last_seen: ms(row.get(6)?),
        last_push: row.get::<_, Option<i64>>(7)?.map(ms),
        revoked_at: row.get::<_, Option<i64>>(8)?.map(ms),
        certificate: row.get(9)?,
        certificate_expires_at: ms(row.get(10)?),
    })
}

#[async_trait]
impl Registry for SqliteRegistry {
    async fn create_session(
        &self,
        token_hash: &str,
        user: &str,
        expires_at: u64,
    ) -> RegistryResult<()> {
        let (token_hash, user) = (token_hash.to_owned(), user.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
                params![token_hash, user, sql_ms(expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn session_user(&self, token_hash: &str, now: u64) -> RegistryResult<Option<String>> {
        let token_hash = token_hash.to_owned();
        self.call(move |c| {
            c.query_row(
                "SELECT user_id FROM sessions WHERE token_hash = ?1 AND expires_at > ?2",
                params![token_hash, sql_ms(now)],
                |row| row.get(0),
            )
            .optional()
        })
        .await
    }

    async fn create_space(&self, space: &SpaceRecord) -> RegistryResult<bool> {
        let space = space.clone();
        self.call(move |c| {
            let tx = c.transaction()?;
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO spaces (id, created_by, created_at) VALUES (?1, ?2, ?3)",
                params![space.id, space.created_by, sql_ms(space.created_at)],
            )?;
            if inserted == 1 {
                tx.execute(
                    "INSERT INTO members (space, user_id, role, added_at) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        space.id,
                        space.created_by,
                        Role::Admin.as_str(),
                        sql_ms(space.created_at)
                    ],
                )?;
            }
            tx.commit()?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn space(&self, id: &str) -> RegistryResult<Option<SpaceRecord>> {
        let id = id.to_owned();
        self.call(move |c| {
            c.query_row(
                "SELECT id, created_by, created_at FROM spaces WHERE id = ?1",
                params![id],
                |row| {
                    Ok(SpaceRecord {
                        id: row.get(0)?,
                        created_by: row.get(1)?,
                        created_at: ms(row.get(2)?),
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn spaces(&self) -> RegistryResult<Vec<SpaceRecord>> {
        self.call(|c| {
            let mut statement =
                c.prepare_cached("SELECT id, created_by, created_at FROM spaces ORDER BY id")?;
            statement
                .query_map([], |row| {
                    Ok(SpaceRecord {
                        id: row.get(0)?,
                        created_by: row.get(1)?,
                        created_at: ms(row.get(2)?),
                    })
                })?
                .collect()
        })
        .await
    }

    async fn memberships(&self, user: &str) -> RegistryResult<Vec<(String, Role)>> {
        let user = user.to_owned();
        self.call(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT space, role FROM members WHERE user_id = ?1 ORDER BY space",
            )?;
            statement
                .query_map(params![user], |row| {
                    Ok((row.get(0)?, role_from_sql(row.get(1)?)?))
                })?
                .collect()
        })
        .await
    }

    async fn member_role(&self, space: &str, user: &str) -> RegistryResult<Option<Role>> {
        let (space, user) = (space.to_owned(), user.to_owned());
        self.call(move |c| {
            c.prepare_cached("SELECT role FROM members WHERE space = ?1 AND user_id = ?2")?
                .query_row(params![space, user], |row| role_from_sql(row.get(0)?))
                .optional()
        })
        .await
    }

    async fn members(&self, space: &str) -> RegistryResult<Vec<(String, Role)>> {
        let space = space.to_owned();
        self.call(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT user_id, role FROM members WHERE space = ?1 ORDER BY user_id",
            )?;
            statement
                .query_map(params![space], |row| {
                    Ok((row.get(0)?, role_from_sql(row.get(1)?)?))
                })?
                .collect()
        })
        .await
    }

    async fn add_member(
        &self,
        space: &str,
        user: &str,
        role: Role,
        now: u64,
    ) -> RegistryResult<()> {
        let (space, user) = (space.to_owned(), user.to_owned());
        self.call(move |c| {
            let tx = c.transaction()?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT role FROM members WHERE space = ?1 AND user_id = ?2",
                    params![space, user],
                    |row| row.get(0),
                )
                .optional()?;
            match current.map(role_from_sql).transpose()? {
                Some(existing) if existing >= role => {}
                Some(_) => {
                    tx.execute(
                        "UPDATE members SET role = ?3 WHERE space = ?1 AND user_id = ?2",
                        params![space, user, role.as_str()],
                    )?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO members (space, user_id, role, added_at) VALUES (?1, ?2, ?3, ?4)",
                        params![space, user, role.as_str(), sql_ms(now)],
                    )?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn remove_member(
        &self,
        space: &str,
        user: &str,
        now: u64,
    ) -> RegistryResult<Option<Vec<DeviceId>>> {
        let (space, user) = (space.to_owned(), user.to_owned());
        self.call(move |c| {
            let tx = c.transaction()?;
            let removed = tx.execute(
                "DELETE FROM members WHERE space = ?1 AND user_id = ?2",
                params![space, user],
            )?;
            if removed == 0 {
                return Ok(None);
            }
            let revoked: Vec<DeviceId> = {
                let mut statement = tx.prepare(
                    "SELECT id FROM devices WHERE space = ?1 AND user_id = ?2 AND revoked_at IS NULL",
                )?;
                statement
                    .query_map(params![space, user], |row| device_from_sql(row.get(0)?))?
                    .collect::<rusqlite::Result<_>>()?
            };
            tx.execute(
                "UPDATE devices SET revoked_at = ?3 WHERE space = ?1 AND user_id = ?2 AND revoked_at IS NULL",
                params![space, user, sql_ms(now)],
            )?;
            tx.commit()?;
            Ok(Some(revoked))
        })
        .await
    }

    async fn create_invite(&self, invite: &InviteRecord) -> RegistryResult<()> {
        let invite = invite.clone();
        self.call(move |c| {
            c.execute(
                "INSERT INTO invites (code_hash, space, role, expires_at, max_uses, uses, created_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    invite.code_hash,
                    invite.space,
                    invite.role.as_str(),
                    sql_ms(invite.expires_at),
                    invite.max_uses,
                    invite.uses,
                    invite.created_by
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn redeem_invite(
        &self,
        code_hash: &str,
        now: u64,
    ) -> RegistryResult<Result<InviteRecord, InviteRefusal>> {
        let code_hash = code_hash.to_owned();
        self.call(move |c| {
            let tx = c.transaction()?;
            let invite = tx
                .query_row(
                    "SELECT code_hash, space, role, expires_at, max_uses, uses, created_by \
                     FROM invites WHERE code_hash = ?1",
                    params![code_hash],
                    |row| {
                        Ok(InviteRecord {
                            code_hash: row.get(0)?,
                            space: row.get(1)?,
                            role: role_from_sql(row.get(2)?)?,
                            expires_at: ms(row.get(3)?),
                            max_uses: row.get(4)?,
                            uses: row.get(5)?,
                            created_by: row.get(6)?,
                        })
                    },
                )
                .optional()?;
            let Some(mut invite) = invite else {
                return Ok(Err(InviteRefusal::Unknown));
            };
            if invite.expires_at <= now {
                return Ok(Err(InviteRefusal::Expired));
            }
            if invite.uses >= invite.max_uses {
                return Ok(Err(InviteRefusal::Exhausted));
            }
            invite.uses += 1;
            tx.execute(
                "UPDATE invites SET uses = ?2 WHERE code_hash = ?1",
                params![code_hash, invite.uses],
            )?;
            tx.commit()?;
            Ok(Ok(invite))
        })
        .await
    }

    async fn create_challenge(
        &self,
        challenge: &str,
        space: &str,
        user: &str,
        expires_at: u64,
    ) -> RegistryResult<()> {
        let (challenge, space, user) = (challenge.to_owned(), space.to_owned(), user.to_owned());
        self.call(move |c| {
            // Forget expired challenges as new ones come, so the table stays small.
            c.execute(
                "DELETE FROM challenges WHERE expires_at < ?1",
                params![sql_ms(expires_at.saturating_sub(3_600_000))],
            )?;
            c.execute(
                "INSERT INTO challenges (challenge, space, user_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![challenge, space, user, sql_ms(expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn take_challenge(
        &self,
        challenge: &str,
        space: &str,
        user: &str,
        now: u64,
    ) -> RegistryResult<bool> {
        let (challenge, space, user) = (challenge.to_owned(), space.to_owned(), user.to_owned());
        self.call(move |c| {
            let taken = c.execute(
                "DELETE FROM challenges WHERE challenge = ?1 AND space = ?2 AND user_id = ?3 AND expires_at > ?4",
                params![challenge, space, user, sql_ms(now)],
            )?;
            Ok(taken == 1)
        })
        .await
    }

    async fn register_device(&self, device: &DeviceRecord) -> RegistryResult<Registration> {
        let device = device.clone();
        self.call(move |c| {
            let tx = c.transaction()?;
            let existing: Option<(String, Option<i64>)> = tx
                .query_row(
                    "SELECT user_id, revoked_at FROM devices WHERE space = ?1 AND id = ?2",
                    params![device.space, device.id.to_string()],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let outcome = match existing {
                Some((_, Some(_))) => Registration::Revoked,
                Some((owner, None)) if owner != device.user => Registration::OwnedByOther,
                Some(_) => {
                    tx.execute(
                        "UPDATE devices SET name = ?3, sdk_version = ?4, last_seen = ?5, \
                         certificate = ?6, certificate_expires_at = ?7 WHERE space = ?1 AND id = ?2",
                        params![
                            device.space,
                            device.id.to_string(),
                            device.name,
                            device.sdk_version,
                            sql_ms(device.last_seen),
                            device.certificate,
                            sql_ms(device.certificate_expires_at)
                        ],
                    )?;
                    Registration::Renewed
                }
                None => {
                    tx.execute(
                        &format!(
                            "INSERT INTO devices ({DEVICE_COLUMNS}) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                        ),
                        params![
                            device.space,
                            device.id.to_string(),
                            device.user,
                            device.name,
                            device.sdk_version,
                            sql_ms(device.created_at),
                            sql_ms(device.last_seen),
                            device.last_push.map(sql_ms),
                            device.revoked_at.map(sql_ms),
                            device.certificate,
                            sql_ms(device.certificate_expires_at)
                        ],
                    )?;
                    Registration::Created
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn device(&self, space: &str, id: &DeviceId) -> RegistryResult<Option<DeviceRecord>> {
        let (space, id) = (space.to_owned(), id.to_string());
        self.call(move |c| {
            c.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE space = ?1 AND id = ?2"
            ))?
            .query_row(params![space, id], device_row)
            .optional()
        })
        .await
    }

    async fn devices(&self, space: &str) -> RegistryResult<Vec<DeviceRecord>> {
        let space = space.to_owned();
        self.call(move |c| {
            let mut statement = c.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE space = ?1 ORDER BY created_at, id"
            ))?;
            statement.query_map(params![space], device_row)?.collect()
        })
        .await
    }

    async fn set_certificate(
        &self,
        space: &str,
        id: &DeviceId,
        certificate: &[u8],
        expires_at: u64,
    ) -> RegistryResult<()> {
        let (space, id, certificate) = (space.to_owned(), id.to_string(), certificate.to_vec());
        self.call(move |c| {
            c.execute(
                "UPDATE devices SET certificate = ?3, certificate_expires_at = ?4 WHERE space = ?1 AND id = ?2",
                params![space, id, certificate, sql_ms(expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn touch_device(
        &self,
        space: &str,
        id: &DeviceId,
        now: u64,
        pushed: bool,
        sdk_version: Option<&str>,
    ) -> RegistryResult<()> {
        let (space, id) = (space.to_owned(), id.to_string());
        let sdk_version = sdk_version.map(str::to_owned);
        self.call(move |c| {
            c.prepare_cached(
                "UPDATE devices SET last_seen = ?3, \
                 last_push = CASE WHEN ?4 THEN ?3 ELSE last_push END, \
                 sdk_version = COALESCE(?5, sdk_version) WHERE space = ?1 AND id = ?2",
            )?
            .execute(params![space, id, sql_ms(now), pushed, sdk_version])?;
            Ok(())
        })
        .await
    }

    async fn revoke_device(&self, space: &str, id: &DeviceId, now: u64) -> RegistryResult<bool> {
        let (space, id) = (space.to_owned(), id.to_string());
        self.call(move |c| {
            let changed = c.execute(
                "UPDATE devices SET revoked_at = ?3 WHERE space = ?1 AND id = ?2 AND revoked_at IS NULL",
                params![space, id, sql_ms(now)],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn put_upload(&self, upload: &UploadRecord) -> RegistryResult<()> {
        let upload = upload.clone();
        self.call(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO uploads (space, object_key, upload_id, size, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    upload.space,
                    upload.key,
                    upload.upload_id,
                    sql_ms(upload.size),
                    sql_ms(upload.created_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn upload(&self, space: &str, key: &str) -> RegistryResult<Option<UploadRecord>> {
        let (space, key) = (space.to_owned(), key.to_owned());
        self.call(move |c| {
            c.query_row(
                "SELECT space, object_key, upload_id, size, created_at FROM uploads \
                 WHERE space = ?1 AND object_key = ?2",
                params![space, key],
                |row| {
                    Ok(UploadRecord {
                        space: row.get(0)?,
                        key: row.get(1)?,
                        upload_id: row.get(2)?,
                        size: ms(row.get(3)?),
                        created_at: ms(row.get(4)?),
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn delete_upload(&self, space: &str, key: &str) -> RegistryResult<()> {
        let (space, key) = (space.to_owned(), key.to_owned());
        self.call(move |c| {
            c.execute(
                "DELETE FROM uploads WHERE space = ?1 AND object_key = ?2",
                params![space, key],
            )?;
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> RegistryResult<()> {
        self.call(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }
}
