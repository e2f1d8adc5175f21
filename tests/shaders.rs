//! Every WGSL shader parses and validates with naga (the compiler wgpu runs), and every shader
//! has a host file of the same stem in `src/backend/gpu/kernels/` (and vice versa).

// Native only: pollster and the file system are not there on wasm32 (browser tests live elsewhere).
#![cfg(not(target_arch = "wasm32"))]

use naga::valid::{Capabilities, ValidationFlags, Validator};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Stems of the files in `dir` with extension `ext`.
fn stems(dir: &Path, ext: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| p.file_stem().expect("file with an extension has a stem").to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_shader_parses_and_validates() {
    let dir = root().join("shaders");
    let names = stems(&dir, "wgsl");
    assert!(!names.is_empty(), "no shaders found in {}", dir.display());
    let mut failures = Vec::new();
    for stem in &names {
        let path = dir.join(format!("{stem}.wgsl"));
        let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let shown = path.display().to_string();
        let module = match naga::front::wgsl::parse_str(&src) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{shown}: parse error:\n{}", e.emit_to_string_with_path(&src, &shown)));
                continue;
            }
        };
        if let Err(e) = Validator::new(ValidationFlags::all(), Capabilities::all()).validate(&module) {
            failures.push(format!("{shown}: validation error:\n{}", e.emit_to_string_with_path(&src, &shown)));
            continue;
        }
        // The host binds everything it passes; wgpu's derived layout only has bindings the entry
        // point uses, so each shader must have exactly one compute entry point named `main`.
        let entry: Vec<_> = module.entry_points.iter().map(|e| (e.name.as_str(), e.stage)).collect();
        if entry != [("main", naga::ShaderStage::Compute)] {
            failures.push(format!("{shown}: expected one compute entry point `main`, found {entry:?}"));
        }
    }
    assert!(failures.is_empty(), "{} shader(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn every_shader_has_a_host_file_and_vice_versa() {
    let shaders = stems(&root().join("shaders"), "wgsl");
    let mut hosts = stems(&root().join("src/backend/gpu/kernels"), "rs");
    hosts.remove("mod");
    let no_host: Vec<_> = shaders.difference(&hosts).collect();
    let no_shader: Vec<_> = hosts.difference(&shaders).collect();
    assert!(no_host.is_empty(), "shaders without src/backend/gpu/kernels/<stem>.rs: {no_host:?}");
    assert!(no_shader.is_empty(), "host files without shaders/<stem>.wgsl: {no_shader:?}");
}

#[test]
fn kernel_labels_are_their_shader_stems() {
    // The label is the pipeline-cache key and the name in GPU error messages: it must say which
    // file to open.
    let shaders = stems(&root().join("shaders"), "wgsl");
    let labels: BTreeSet<String> = trilemma::backend::gpu::kernels::ALL.iter().map(|k| k.label.to_string()).collect();
    assert_eq!(labels, shaders, "kernels::ALL labels must be exactly the shader stems");
    for k in trilemma::backend::gpu::kernels::ALL {
        let on_disk =
            std::fs::read_to_string(root().join("shaders").join(format!("{}.wgsl", k.label))).expect("shader file");
        assert_eq!(k.source, on_disk, "kernel {} embeds a different source than shaders/{}.wgsl", k.label, k.label);
    }
}
