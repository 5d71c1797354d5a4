# Writes OUT (version.h) with LC_VERSION (VERSION) and LC_COMMIT: the short git
# commit of SOURCE_DIR, "-dirty" when tracked files differ from it, or "" when
# git or the checkout is missing (a source tarball). Run by the lc_version target.
set(commit "")
find_package(Git QUIET)
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --short=12 HEAD WORKING_DIRECTORY ${SOURCE_DIR}
                  OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc ERROR_QUIET)
  if(NOT rc EQUAL 0)
    set(commit "")
  else()
    # diff-index trusts the index's stat data: a file only touched would count as changed
    # until the index is refreshed.
    execute_process(COMMAND ${GIT_EXECUTABLE} update-index -q --refresh WORKING_DIRECTORY ${SOURCE_DIR}
                    OUTPUT_QUIET ERROR_QUIET)
    execute_process(COMMAND ${GIT_EXECUTABLE} diff-index --quiet HEAD -- WORKING_DIRECTORY ${SOURCE_DIR}
                    RESULT_VARIABLE dirty ERROR_QUIET)
    if(dirty EQUAL 1)
      set(commit "${commit}-dirty")
    endif()
  endif()
endif()
set(text "#define LC_VERSION \"${VERSION}\"\n#define LC_COMMIT \"${commit}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUT} "${text}")
endif()
