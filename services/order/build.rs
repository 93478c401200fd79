// `sqlx::migrate!` embeds migrations/ at compile time; a migration added on its own must
// rebuild the crate too.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
