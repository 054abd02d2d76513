# ctest driver: the README's main job — make the example model, convert it, check the artifacts.
file(REMOVE_RECURSE ${WORK})
execute_process(COMMAND ${MAKE_EXAMPLE} ${WORK} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "bpuq_make_example failed")
endif()
execute_process(COMMAND ${CONVERT} --config shapes_cnn.yaml --threads 2 WORKING_DIRECTORY ${WORK}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out)
message(STATUS "${out}")
if(rc)
  message(FATAL_ERROR "bpuq_convert failed on the example")
endif()
foreach(f shapes_cnn_original_float_model.onnx shapes_cnn_optimized_float_model.onnx shapes_cnn_calibrated_model.onnx
          shapes_cnn_quantized_model.onnx shapes_cnn.bpuq shapes_cnn_convert.log report.json)
  if(NOT EXISTS ${WORK}/model_output/${f})
    message(FATAL_ERROR "missing artifact ${f}")
  endif()
endforeach()
if(NOT out MATCHES "Select [a-z-]+ method\\.")
  message(FATAL_ERROR "the log lacks the 'Select ... method.' line")
endif()
# the integer program runs in bpuq_infer on the example's evaluation images
if(INFER)
  execute_process(COMMAND ${INFER} --model model_output/shapes_cnn.bpuq --input eval_images.npy --output program_out.npy
                  WORKING_DIRECTORY ${WORK} RESULT_VARIABLE rc OUTPUT_VARIABLE out)
  message(STATUS "${out}")
  if(rc OR NOT out MATCHES "400 sample\\(s\\) one by one, outputs: prob\\[400x4\\]")
    message(FATAL_ERROR "bpuq_infer failed on the integer program: ${out}")
  endif()
endif()
# the accuracy debug tool runs on the calibrated model and the dumped calibration data
if(DEBUG_TOOL)
  execute_process(COMMAND ${DEBUG_TOOL} runall model_output/shapes_cnn_calibrated_model.onnx model_output/calibration_data
                          --save-dir debug_result --threads 2
                  WORKING_DIRECTORY ${WORK} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "${out}")
  if(rc OR NOT EXISTS ${WORK}/debug_result/index.html OR NOT EXISTS ${WORK}/debug_result/node_sensitivity/sensitivity_of_node.log)
    message(FATAL_ERROR "bpuq_debug runall failed on the example: ${out} ${err}")
  endif()
endif()
# the accuracy optimizer writes a YAML config that bpuq_convert reads back
if(OPTIMIZE)
  execute_process(COMMAND ${OPTIMIZE} --config shapes_cnn.yaml --target-cosine 0.99999 --work-dir optimize_work
                          --output shapes_cnn_optimized.yaml --threads 2 --max-int16 2 --max-int16-tries 2 --max-cpu 1
                  WORKING_DIRECTORY ${WORK} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "${out}")
  # 0: reached, 3: not reached (both write the best config found)
  if(NOT (rc EQUAL 0 OR rc EQUAL 3) OR NOT EXISTS ${WORK}/shapes_cnn_optimized.yaml OR NOT out MATCHES "step 1: calibration method")
    message(FATAL_ERROR "bpuq_optimize failed on the example (${rc}): ${out} ${err}")
  endif()
  execute_process(COMMAND ${CONVERT} --config shapes_cnn_optimized.yaml --threads 2 WORKING_DIRECTORY ${WORK}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc)
    message(FATAL_ERROR "bpuq_convert cannot read the optimized config: ${err}")
  endif()
endif()
