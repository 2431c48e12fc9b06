//! Apps in soketi's SQL table (`apps` by default), in PostgreSQL or MySQL/MariaDB.
//!
//! The driver runs `SELECT * FROM <table> WHERE id = ?` (or `key`), as soketi does, and reads
//! every column by name: soketi's snake_case columns (`max_connections`,
//! `enable_client_messages`, ...), with NULL meaning "the server's default". Values go through
//! the same [`AppConfig`](crate::config::AppConfig) as configured apps, so a table and a config file mean the same.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use soketi_protocol::{App, AppLimits};
// The table name is checked to be an identifier when the configuration is read, and the
// column is one of two constants: the dynamic part of each query is safe.
use sqlx::{AssertSqlSafe, Column, Row};

use super::{AppManager, AppStoreError, stored_app};

/// Which database holds the apps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlBackend {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

enum Pool {
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
}

/// Looks apps up in a SQL table.
pub struct SqlAppManager {
    pool: Pool,
    table: String,
    limits: AppLimits,
    timeout: Duration,
}

/// How long one lookup may take before the store counts as unavailable.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

impl SqlAppManager {
    /// A manager for `table` at `url`. The pool connects lazily, so a database that is down at
    /// start-up only fails the lookups until it is back.
    pub fn new(
        backend: SqlBackend,
        url: &str,
        table: &str,
        limits: AppLimits,
        pool_size: (u32, u32),
    ) -> Result<Self, AppStoreError> {
        let (min, max) = pool_size;
        let pool = match backend {
            SqlBackend::Postgres => Pool::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .min_connections(min)
                    .max_connections(max.max(1))
                    .acquire_timeout(LOOKUP_TIMEOUT)
                    .connect_lazy(url)
                    .map_err(AppStoreError::Settings)?,
            ),
            SqlBackend::Mysql => Pool::Mysql(
                sqlx::mysql::MySqlPoolOptions::new()
                    .min_connections(min)
                    .max_connections(max.max(1))
                    .acquire_timeout(LOOKUP_TIMEOUT)
                    .connect_lazy(url)
                    .map_err(AppStoreError::Settings)?,
            ),
        };
        Ok(Self {
            pool,
            table: table.to_owned(),
            limits,
            timeout: LOOKUP_TIMEOUT,
        })
    }

    async fn find(&self, column: &str, value: &str) -> Result<Option<Arc<App>>, AppStoreError> {
        let lookup = async {
            match &self.pool {
                Pool::Postgres(pool) => {
                    let query = format!(
                        "SELECT * FROM \"{}\" WHERE \"{column}\" = $1 LIMIT 1",
                        self.table
                    );
                    let row = sqlx::query(AssertSqlSafe(query))
                        .bind(value)
                        .fetch_optional(pool)
                        .await?;
                    Ok(row.map(|row| pg_row(&row)))
                }
                Pool::Mysql(pool) => {
                    let query = format!(
                        "SELECT * FROM `{}` WHERE `{column}` = ? LIMIT 1",
                        self.table
                    );
                    let row = sqlx::query(AssertSqlSafe(query))
                        .bind(value)
                        .fetch_optional(pool)
                        .await?;
                    Ok(row.map(|row| mysql_row(&row)))
                }
            }
        };
        let row: Option<Value> = tokio::time::timeout(self.timeout, lookup)
            .await
            .map_err(|_| AppStoreError::Timeout(self.timeout))?
            .map_err(AppStoreError::Database)?;
        row.map(|row| stored_app(row, &self.table, &self.limits))
            .transpose()
    }
}

/// Reads every column as JSON, whatever its SQL type.
macro_rules! row_to_json {
    ($row:expr, $($ty:ty),+) => {{
        let row = $row;
        let mut out = Map::new();
        for (i, column) in row.columns().iter().enumerate() {
            let mut value = Value::Null;
            $(
                if value.is_null() {
                    if let Ok(Some(v)) = row.try_get::<Option<$ty>, _>(i) {
                        value = serde_json::to_value(v).unwrap_or(Value::Null);
                    }
                }
            )+
            out.insert(column.name().to_owned(), value);
        }
        Value::Object(out)
    }};
}

fn pg_row(row: &sqlx::postgres::PgRow) -> Value {
    row_to_json!(row, String, i64, i32, i16, bool, f64, f32, Value)
}

fn mysql_row(row: &sqlx::mysql::MySqlRow) -> Value {
    // No `bool`: MySQL's decoder takes any integer for it, and `tinyint(1)` booleans read as
    // numbers, which `AppConfig` takes for booleans anyway.
    row_to_json!(row, String, i64, i32, i16, i8, u64, u32, f64, Value)
}

#[async_trait]
impl AppManager for SqlAppManager {
    async fn find_by_id(&self, id: &str) -> Result<Option<Arc<App>>, AppStoreError> {
        self.find("id", id).await
    }

    async fn find_by_key(&self, key: &str) -> Result<Option<Arc<App>>, AppStoreError> {
        self.find("key", key).await
    }
}
