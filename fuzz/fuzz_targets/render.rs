//! Fuzzes the template renderer: the input is `mode NUL token NUL template`;
//! rendering never panics and an error's span lies inside the template.
#![no_main]

use std::collections::BTreeMap;

use dispenser::config::render::Renderer;
use dispenser::config::SourceFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let mode = parts.next().unwrap_or_default();
    let token = parts.next().unwrap_or_default();
    let template = parts.next().unwrap_or_default();
    let variables: BTreeMap<String, String> = [
        ("mode".to_string(), mode.to_string()),
        ("token".to_string(), token.to_string()),
    ]
    .into();
    match Renderer::new().render(template, &variables) {
        Ok(rendered) => {
            let file = SourceFile::rendered("t.toml", template.to_string(), rendered.clone());
            let diagnostic = file.error_at(rendered.len() / 2..rendered.len(), "m", "l");
            let snippet = diagnostic.snippet.expect("a snippet");
            assert!(snippet.line <= template.split('\n').count());
        }
        Err(error) => {
            if let Some(span) = error.span {
                assert!(span.start <= span.end && span.end <= template.len());
                let file = SourceFile::plain("t.toml", template);
                let diagnostic = file.error_at_source(span, error.message, error.label);
                let snippet = diagnostic.snippet.expect("a snippet");
                assert!(snippet.line <= template.split('\n').count());
            }
        }
    }
});
