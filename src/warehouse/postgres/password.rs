//! Reading `warehouse.password_file`: the one place the PostgreSQL password comes from disk.

use std::path::{Path, PathBuf};

use crate::warehouse::WarehouseError;

fn invalid(reason: String, fix: &'static str) -> WarehouseError {
    WarehouseError::PgConfig {
        key: "warehouse.password_file",
        reason,
        fix,
    }
}

/// Reads the password file (trailing newline dropped); `$CREDENTIALS_DIRECTORY/name`
/// (systemd `LoadCredential=`) is expanded as for `api.token_file`.
pub(super) fn read_password_file(
    file: &str,
    credentials_dir: Option<&Path>,
) -> Result<String, WarehouseError> {
    let path = match file
        .strip_prefix("$CREDENTIALS_DIRECTORY/")
        .or_else(|| file.strip_prefix("${CREDENTIALS_DIRECTORY}/"))
    {
        Some(rest) => match credentials_dir {
            Some(dir) => dir.join(rest),
            None => {
                return Err(invalid(
                    "refers to $CREDENTIALS_DIRECTORY, which is not set".into(),
                    "run under systemd with LoadCredential=, or give an absolute path",
                ));
            }
        },
        None => PathBuf::from(file),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        invalid(
            format!("cannot be read ({}: {e})", path.display()),
            "point it at a readable file that holds only the password",
        )
    })?;
    let pw = text.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        return Err(invalid(
            format!("({}) is empty", path.display()),
            "write the password into it",
        ));
    }
    Ok(pw.to_string())
}
