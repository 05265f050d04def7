//! The label grammar: no panic, and a label that parses prints to a text that parses to it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pgaadauth_core::label::Label;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(label) = Label::parse(&text) {
        let printed = label.to_string();
        assert_eq!(Label::parse(&printed).as_ref(), Ok(&label), "{printed}");
    }
});
