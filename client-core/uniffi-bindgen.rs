//! The bindings generator: `cargo run -p client-core --features bindgen --bin uniffi-bindgen --
//! generate --library target/debug/libclient_core.so --language kotlin --out-dir out/`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
