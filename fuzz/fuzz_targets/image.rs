//! Fuzzes the image reference parser: never panics, and a normalised
//! reference parses back to the same value.
#![no_main]

use dispenser_actors::plan::ImageRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(image) = ImageRef::parse(&text) {
        let canonical = image.canonical();
        let again = ImageRef::parse(&canonical).expect("a canonical reference parses");
        assert_eq!(again.registry, image.registry);
        assert_eq!(again.repository, image.repository);
        assert_eq!(again.tag, image.tag);
        assert_eq!(again.digest, image.digest);
        assert_eq!(again.canonical(), canonical);
    }
});
