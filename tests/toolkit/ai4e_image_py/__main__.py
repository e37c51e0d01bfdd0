# A service written for the AI for Earth API framework the way its image
# examples are (Examples/pytorch/pytorch_api/runserver.py and
# Examples/tensorflow/tf_iNat_api/runserver.py in microsoft/AIforEarth-API-Development):
# an image posted as bytes, a sync classify and an async detect, the
# processing function wrapping `request.data` in a BytesIO, AI4E's Flask
# extension `AppInsights(app)` with no instrumentation key set.
# Not changed to this project's style on purpose: it is AI4E user code.
# Not in the original: the model is the image's length (no torch here); the
# processing function of /detect refuses an empty image with abort(400), and
# /detect sets its last status with UpdateTaskStatus (as AI4E's older examples
# did) and returns the image stream it was given (AI4E ignored what an async
# function returned).
import sys
from io import BytesIO

from ai4e_app_insights import AppInsights
from ai4e_app_insights_wrapper import AI4EAppInsights
from ai4e_service import APIService
from flask import Flask, abort

print("Creating Application")

ACCEPTED_CONTENT_TYPES = ['image/png', 'application/octet-stream', 'image/jpeg']

app = Flask(__name__)
appinsights = AppInsights(app)

log = AI4EAppInsights()

with app.app_context():
    ai4e_service = APIService(app, log)


def process_request_data(request):
    print('Processing data...')
    return_values = {'image_bytes': None}
    try:
        return_values['image_bytes'] = BytesIO(request.data)
    except:  # noqa: E722 - as AI4E's example wrote it
        log.log_error('Unable to load the request data')
    return return_values


def process_detect_request(request):
    if not request.data:
        abort(400, 'an image is required')
    return process_request_data(request)


@ai4e_service.api_sync_func(
    api_path = '/classify',
    methods = ['POST'],
    request_processing_function = process_request_data,
    maximum_concurrent_requests = 5,
    content_types = ACCEPTED_CONTENT_TYPES,
    content_max_length = 10000,
    trace_name = 'post:classify')
def post(*args, **kwargs):
    print('Post called')
    image_bytes = kwargs.get('image_bytes')
    return 'class ' + str(len(image_bytes.getvalue()))


@ai4e_service.api_async_func(
    api_path = '/detect',
    methods = ['POST'],
    request_processing_function = process_detect_request,
    maximum_concurrent_requests = 5,
    content_types = ACCEPTED_CONTENT_TYPES,
    content_max_length = 10000,
    trace_name = 'post:detect')
def detect(*args, **kwargs):
    print('runserver.py: detect() called, generating detections...')
    image_bytes = kwargs.get('image_bytes')
    taskId = kwargs.get('taskId')
    ai4e_service.api_task_manager.UpdateTaskStatus(taskId, 'running - generate_detections')
    try:
        boxes = str(len(image_bytes.getvalue()))
        ai4e_service.api_task_manager.UpdateTaskStatus(taskId, 'completed - ' + boxes + ' boxes')
    except:  # noqa: E722 - as AI4E's example wrote it
        log.log_exception(sys.exc_info()[0], taskId)
        ai4e_service.api_task_manager.FailTask(taskId, 'failed: ' + str(sys.exc_info()[0]))
    return image_bytes


if __name__ == '__main__':
    app.run()
