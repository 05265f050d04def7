//! Links libpam and libpq (Debian: libpam0g-dev, libpq-dev), and marks the module
//! `nodelete`: PgBouncer runs every login through its own pam_start/pam_end, and pam_end
//! unloads the modules; staying loaded keeps the connection to the server between logins.

fn main() {
    println!("cargo:rustc-link-lib=dylib=pam");
    println!("cargo:rustc-link-lib=dylib=pq");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
