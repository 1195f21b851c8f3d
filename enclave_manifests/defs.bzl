"""`gramine_manifest`: a rendered Gramine manifest and its expected sim MRENCLAVE."""

def _impl(ctx):
    manifest = ctx.actions.declare_file(ctx.label.name + ".manifest")
    mrenclave = ctx.actions.declare_file(ctx.label.name + ".mrenclave")
    files = depset(transitive = [t[DefaultInfo].files for t in ctx.attr.trusted]).to_list()
    files = [f for f in files if f.extension == "py" or f.extension == "pem"]
    files += [t[DefaultInfo].files_to_run.executable for t in ctx.attr.trusted_executables]
    args = ctx.actions.args()
    args.add("--template", ctx.file.template)
    args.add("--manifest-out", manifest)
    args.add("--mrenclave-out", mrenclave)
    args.add_all(["%s=%s" % (_uri(f), f.path) for f in files])
    ctx.actions.run(
        executable = ctx.executable._render,
        arguments = [args],
        inputs = files + [ctx.file.template],
        outputs = [manifest, mrenclave],
        mnemonic = "GramineManifest",
        progress_message = "Rendering Gramine manifest %s" % ctx.label,
    )
    return [DefaultInfo(
        files = depset([manifest, mrenclave]),
        runfiles = ctx.runfiles(files = [manifest, mrenclave] + files),
    )]

def _uri(f):
    """Path inside the enclave: generated protos live under proto/, like in runfiles."""
    return f.short_path

gramine_manifest = rule(
    implementation = _impl,
    attrs = {
        "template": attr.label(allow_single_file = [".template"], mandatory = True),
        "trusted": attr.label_list(doc = "targets whose .py/.pem files are trusted files"),
        "trusted_executables": attr.label_list(
            doc = "binaries the enclave runs (the native data plane), trusted files too",
            cfg = "target",
        ),
        "_render": attr.label(
            default = "//enclave_manifests:render",
            executable = True,
            cfg = "exec",
        ),
    },
)
