# vmsig_unit_test(NAME SOURCES... [LIBS ...] [TIMEOUT s] [LABELS ...])
# A cmocka test binary run by ctest.
function(vmsig_unit_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE PkgConfig::CMOCKA Threads::Threads ${T_LIBS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src
                                             ${PROJECT_SOURCE_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} ENVIRONMENT "CMOCKA_MESSAGE_OUTPUT=stdout")
  if(T_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}")
  endif()
endfunction()

# vmsig_fuzzer(NAME SOURCE LIBS...)
# With VMSIG_FUZZ: a libFuzzer binary, run by ctest for VMSIG_FUZZ_SECONDS on
# its seed corpus (tests/fuzz/corpus/NAME). Without: the same harness linked
# to a small replay main that runs every seed once, so gcc builds keep the
# harness compiling and the seeds passing.
function(vmsig_fuzzer name source)
  set(libs ${ARGN})
  set(corpus ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${name})
  if(VMSIG_FUZZ)
    add_executable(${name} ${source})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    set(workdir ${CMAKE_CURRENT_BINARY_DIR}/${name}.corpus)
    file(MAKE_DIRECTORY ${workdir})
    add_test(NAME ${name}
             COMMAND ${name} -max_total_time=${VMSIG_FUZZ_SECONDS} -rss_limit_mb=2048 -timeout=10
                     ${workdir} ${corpus})
    set_tests_properties(${name} PROPERTIES TIMEOUT 300 LABELS fuzz)
  else()
    add_executable(${name} ${source} ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.c)
    add_test(NAME ${name}_seeds COMMAND ${name} ${corpus})
    set_tests_properties(${name}_seeds PROPERTIES TIMEOUT 120 LABELS fuzz)
  endif()
  target_link_libraries(${name} PRIVATE ${libs} Threads::Threads)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
endfunction()
