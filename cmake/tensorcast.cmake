# Shared helpers: warnings and sanitizers for our own targets, and one way to
# register tests with labels (unit, integration, gpu).

function(tensorcast_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror)
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
