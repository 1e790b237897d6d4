# Shared helpers: warnings and sanitizers for our own targets, and one way to
# register tests with labels (unit, integration, gpu).

function(tensorcast_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(TENSORCAST_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  # Clang's -Wall (the fuzz build) has -Woverloaded-virtual, which GCC's
  # lacks; it fires on the generated service base classes that the raw
  # Put/Fetch methods override.
  # Clang also checks the locks: ABSL_GUARDED_BY, ABSL_LOCKS_EXCLUDED and
  # the rest of absl/base/thread_annotations.h on our Mutex
  # (common/mutex.h). `make test-thread-safety` is the build for it.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    target_compile_options(${target} PRIVATE -Wno-overloaded-virtual
                                             -Wthread-safety)
  endif()
  if(TENSORCAST_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${TENSORCAST_SANITIZE}
                                             -fno-omit-frame-pointer
                                             -fno-sanitize-recover=all)
    target_link_options(${target} PRIVATE -fsanitize=${TENSORCAST_SANITIZE})
  endif()
endfunction()

# Sanitized builds must link the runtime into every binary, libraries included.
if(TENSORCAST_SANITIZE)
  add_link_options(-fsanitize=${TENSORCAST_SANITIZE})
endif()

# tensorcast_add_test(NAME SOURCES a.cc b.cc LIBS x y LABELS unit [TIMEOUT s])
function(tensorcast_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  tensorcast_target_defaults(${name})
  target_link_libraries(${name} PRIVATE ${T_LIBS} tensorcast::test_support
                                        GTest::gtest GTest::gtest_main)
  # TENSORCAST_PYTHON comes with tensorcast::test_support.
  target_compile_definitions(${name} PRIVATE
      TENSORCAST_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}"
      TENSORCAST_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT})
endfunction()

# tensorcast_grpc_library(TARGET ROOT dir PROTOS a.proto b.proto): a library
# of the protobuf and gRPC C++ code generated from the .proto files (paths
# relative to ROOT, which is also the import root).
find_program(TENSORCAST_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
function(tensorcast_grpc_library target)
  cmake_parse_arguments(P "" "ROOT" "PROTOS" ${ARGN})
  set(gen_dir ${CMAKE_CURRENT_BINARY_DIR}/gen)
  file(MAKE_DIRECTORY ${gen_dir})
  set(gen_srcs)
  foreach(proto ${P_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" stem ${proto})
    set(outs ${gen_dir}/${stem}.pb.cc ${gen_dir}/${stem}.pb.h
             ${gen_dir}/${stem}.grpc.pb.cc ${gen_dir}/${stem}.grpc.pb.h)
    add_custom_command(
      OUTPUT ${outs}
      COMMAND protobuf::protoc
        --proto_path=${P_ROOT}
        --cpp_out=${gen_dir}
        --grpc_out=${gen_dir}
        --plugin=protoc-gen-grpc=${TENSORCAST_GRPC_CPP_PLUGIN}
        ${P_ROOT}/${proto}
      DEPENDS ${P_ROOT}/${proto}
      COMMENT "protoc ${proto}")
    list(APPEND gen_srcs ${outs})
  endforeach()
  add_library(${target} ${gen_srcs})
  target_include_directories(${target} PUBLIC ${gen_dir})
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf gRPC::grpc++)
endfunction()

# tensorcast_headers(TARGET PUBLIC|PRIVATE DIR): TARGET includes the headers
# of DIR, a folder relative to the project root (server/core), by their
# root-relative path ("server/core/npy.h"), and with PUBLIC so does whatever
# links TARGET. No target has the project root itself on its include path:
# the include directory is a folder of the build tree, one per DIR, holding
# a single link, DIR -> the source folder. So a target sees the headers of
# the folders it names here and of the libraries it links, and no others --
# a client that includes "server/core/npy.h" does not compile ("No such file
# or directory") rather than quietly depending on the server.
# scripts/check_includes.sh (make lint) checks the same boundaries by the
# text of the #include lines.
function(tensorcast_headers target scope dir)
  string(REPLACE "/" "_" name ${dir})
  set(root ${PROJECT_BINARY_DIR}/include/${name})
  get_filename_component(parent ${root}/${dir} DIRECTORY)
  file(MAKE_DIRECTORY ${parent})
  # Replaces the link if it is there (a build folder moved to another
  # checkout).
  file(CREATE_LINK ${PROJECT_SOURCE_DIR}/${dir} ${root}/${dir} SYMBOLIC)
  target_include_directories(${target} ${scope} ${root})
endfunction()
