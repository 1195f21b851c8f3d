"""`py_proto_grpc_library`: Python messages, gRPC stubs and typed stubs from .proto.

Code is generated at build time by the locked grpcio-tools and mypy-protobuf and
is never committed. Import paths follow the file paths under //proto, so
`proto/s3ml/attest/v1/types.proto` becomes `s3ml.attest.v1.types_pb2`.
"""

load("//third_party:requirements.bzl", "requirement")

_PROTO_ROOT = "proto"

def _stem(src):
    path = src.short_path
    if not path.startswith(_PROTO_ROOT + "/"):
        fail("%s is not under //%s" % (path, _PROTO_ROOT))
    return path[len(_PROTO_ROOT) + 1:-len(".proto")]

def _gen_impl(ctx):
    outputs = []
    package_prefix = ctx.label.package + "/"
    for src in ctx.files.srcs:
        rel = src.short_path[len(package_prefix):-len(".proto")]
        for suffix in ["_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"]:
            outputs.append(ctx.actions.declare_file(rel + suffix))
    out_root = ctx.bin_dir.path + "/" + _PROTO_ROOT
    args = ctx.actions.args()
    args.add("-I" + _PROTO_ROOT)
    args.add("--python_out=" + out_root)
    args.add("--grpc_python_out=" + out_root)
    args.add("--plugin=protoc-gen-mypy=" + ctx.executable._mypy.path)
    args.add("--plugin=protoc-gen-mypy_grpc=" + ctx.executable._mypy_grpc.path)
    args.add("--mypy_out=" + out_root)
    args.add("--mypy_grpc_out=" + out_root)
    args.add_all([_PROTO_ROOT + "/" + _stem(s) + ".proto" for s in ctx.files.srcs])
    ctx.actions.run(
        executable = ctx.executable._protoc,
        arguments = [args],
        inputs = depset(ctx.files.srcs, transitive = [d[DefaultInfo].files for d in ctx.attr.proto_deps]),
        tools = [ctx.executable._mypy, ctx.executable._mypy_grpc],
        outputs = outputs,
        mnemonic = "ProtocPython",
        progress_message = "Generating Python code for %s" % ctx.label,
    )
    return [DefaultInfo(files = depset(outputs), runfiles = ctx.runfiles(files = outputs))]

_py_proto_gen = rule(
    implementation = _gen_impl,
    attrs = {
        "srcs": attr.label_list(allow_files = [".proto"]),
        "proto_deps": attr.label_list(),
        "_protoc": attr.label(default = "//tools/proto:protoc", executable = True, cfg = "exec"),
        "_mypy": attr.label(default = "//tools/proto:protoc_gen_mypy", executable = True, cfg = "exec"),
        "_mypy_grpc": attr.label(default = "//tools/proto:protoc_gen_mypy_grpc", executable = True, cfg = "exec"),
    },
)

def py_proto_grpc_library(name, srcs, deps = [], visibility = None):
    """Generates and wraps the Python code of `srcs` as one py_library.

    Args:
      name: the py_library's name.
      srcs: .proto files in this package.
      deps: other py_proto_grpc_library targets whose protos these import.
      visibility: visibility of the library.
    """
    filegroup_name = name + "_protos"
    native.filegroup(name = filegroup_name, srcs = srcs + [d + "_protos" for d in deps])
    _py_proto_gen(
        name = name + "_gen",
        srcs = srcs,
        proto_deps = [d + "_protos" for d in deps],
    )
    depth = len(native.package_name().split("/")) - 1
    native.py_library(
        name = name,
        srcs = [":" + name + "_gen"],
        data = [":" + name + "_gen"],
        imports = ["/".join([".."] * depth)] if depth else ["."],
        deps = deps + [requirement("protobuf"), requirement("grpcio")],
        visibility = visibility,
    )

# C++ is built against Debian's gRPC and protobuf (libgrpc++-dev 1.51,
# libprotobuf-dev 3.21, installed by tools/bootstrap), so the generator is the
# matching system protoc, not grpcio-tools' newer one.
GRPC_CC_LINKOPTS = [
    "-lgrpc++",
    "-lgrpc",
    "-lgpr",
    "-lprotobuf",
    "-labsl_synchronization",
    "-labsl_time",
    "-labsl_strings",
    "-labsl_status",
    "-labsl_cord",
    "-labsl_raw_logging_internal",
    "-labsl_throw_delegate",
    "-labsl_base",
    "-lssl",
    "-lcrypto",
    "-lpthread",
]

def _cc_generated(name, srcs, plugin_flags, suffixes, linkopts, deps, visibility):
    stems = [s[:-len(".proto")] for s in srcs]
    outs = [stem + suffix for stem in stems for suffix in suffixes]
    native.genrule(
        name = name + "_gen",
        srcs = srcs,
        outs = outs,
        cmd = " ".join(["/usr/bin/protoc -I" + _PROTO_ROOT] + plugin_flags +
                       [native.package_name() + "/" + s for s in srcs]),
        message = "Generating C++ code for " + name,
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        strip_include_prefix = "/" + native.package_name(),
        include_prefix = native.package_name()[len(_PROTO_ROOT) + 1:],
        linkopts = linkopts,
        deps = deps,
        visibility = visibility,
    )

def cc_proto_grpc_library(name, srcs, visibility = None):
    """C++ code of `srcs` (in this package, importing nothing outside it).

    `name + "_messages"` holds the messages only (protobuf, no gRPC: the data
    plane's own HTTP/2 transport needs no more); `name` adds gRPC service code.

    Args:
      name: the cc_library's name.
      srcs: .proto files in this package, importing nothing outside it.
      visibility: visibility of the libraries.
    """
    _cc_generated(
        name = name + "_messages",
        srcs = srcs,
        plugin_flags = ["--cpp_out=$(GENDIR)/" + _PROTO_ROOT],
        suffixes = [".pb.h", ".pb.cc"],
        linkopts = ["-lprotobuf", "-lpthread"],
        deps = [],
        visibility = visibility,
    )
    _cc_generated(
        name = name,
        srcs = srcs,
        plugin_flags = [
            "--grpc_out=$(GENDIR)/" + _PROTO_ROOT,
            "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin",
        ],
        suffixes = [".grpc.pb.h", ".grpc.pb.cc"],
        linkopts = GRPC_CC_LINKOPTS,
        deps = [":" + name + "_messages"],
        visibility = visibility,
    )
