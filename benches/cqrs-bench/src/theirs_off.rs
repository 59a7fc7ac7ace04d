//! Stands in for the cqrs-es comparison when the `cqrs-es` feature is off: there is nothing
//! to compare with, so no value of [`Theirs`] can exist.

use std::sync::Arc;

use crate::Result;
use crate::load::{Budget, Rate};
use crate::report::Latency;

/// cqrs-es, not built in.
pub enum Theirs {}

impl Theirs {
    /// Says how to turn the comparison on.
    pub async fn setup(_url: &str, _schema: &str, _ids: Arc<[String]>) -> Result<Option<Self>> {
        eprintln!("cqrs-es: not compared (build with `--features cqrs-es` or `--all-features`)");
        Ok(None)
    }

    /// Never called.
    pub async fn commands(&self, _tasks: usize, _budget: Budget) -> Result<Rate> {
        match *self {}
    }

    /// Never called.
    pub async fn build_stream(&self, _id: &str, _length: usize, _snapshot: bool) -> Result<()> {
        match *self {}
    }

    /// Never called.
    pub async fn check_stream(&self, _id: &str, _length: usize, _snapshot: bool) -> Result<()> {
        match *self {}
    }

    /// Never called.
    pub async fn latency(&self, _id: &str, _snapshot: bool, _budget: Budget) -> Result<Option<Latency>> {
        match *self {}
    }

    /// Never called.
    pub async fn close(&self) {
        match *self {}
    }
}
