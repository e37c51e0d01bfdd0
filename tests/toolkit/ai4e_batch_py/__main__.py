# A service written for the AI for Earth API framework the way the CameraTraps
# batch processing API is (microsoft/CameraTraps, api/batch_processing,
# runserver.py on APIService): a JSON POST validated by the request
# processing function, statuses set as dicts (`get_task_status(...)`) that
# clients read back as JSON objects under `Status`.
# Not changed to this project's style on purpose: it is AI4E user code.
# Not in the original: no Azure blob storage or AML cluster (the "images" are
# the request's list), a short sleep, and a failing request for "fail". /example
# is the v4 scaffold's: its function starts a monitoring thread and returns.
import string
from datetime import UTC, datetime
from os import getenv
from threading import Thread
from time import sleep

from ai4e_app_insights_wrapper import AI4EAppInsights
from ai4e_service import APIService
from flask import Flask, jsonify, make_response, request

print('Creating application')
app = Flask(__name__)

log = AI4EAppInsights()

with app.app_context():
    ai4e_service = APIService(app, log)


def get_utc_timestamp():
    return datetime.now(UTC).strftime('%Y%m%d%H%M%S')


def get_task_status(request_status, message):
    return {
        'request_status': request_status,
        'time': datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S'),
        'message': message
    }


def _abort(error_code, error_message):
    return make_response(jsonify({'error': error_message}), error_code)


def _request_detections_validate_params(request):
    """Returns an error straight-away without issuing the user a request_id if the parameters
    are not acceptable."""
    if not request.is_json:
        return _abort(415, 'Body needs to have a mimetype for JSON (e.g. application/json).')

    post_body = request.get_json()

    images = post_body.get('images', None)
    if not images:
        return _abort(400, 'images is a required field.')

    request_name = post_body.get('request_name', '')
    if request_name != '':
        allowed = set(string.ascii_letters + string.digits + '_' + '-')
        if not set(request_name) <= allowed:
            return _abort(400, 'request_name contains unallowed characters '
                               '(only letters, digits, - and _ are allowed).')

    return {
        'images': images,
        'request_name': request_name,
        'request_submission_timestamp': get_utc_timestamp(),
    }


@ai4e_service.api_async_func(
    api_path = '/request_detections',
    methods = ['POST'],
    request_processing_function = _request_detections_validate_params,
    maximum_concurrent_requests = 1,
    content_types = ['application/json'],
    content_max_length = 10000,
    trace_name = 'post:request_detections')
def request_detections(*args, **kwargs):
    request_id = kwargs.get('taskId')
    images = kwargs.get('images')
    log.log_debug('Started task', request_id)

    ai4e_service.api_task_manager.UpdateTaskStatus(request_id,
                                                   get_task_status('running', 'Request received.'))
    sleep(float(getenv('SLEEP', '0.2')))
    if 'fail' in images:
        status = get_task_status('failed', 'An image could not be read.')
        ai4e_service.api_task_manager.FailTask(request_id, status)
        return
    ai4e_service.api_task_manager.CompleteTask(request_id, get_task_status('completed', {
        'num_images': len(images),
        'detections': kwargs.get('request_name', '') + '_detections.json',
    }))


def monitor_aml_job(**kwargs):
    task_id = kwargs['task_id']
    sleep(float(getenv('SLEEP', '0.2')))
    if kwargs['fail']:
        ai4e_service.api_task_manager.FailTask(task_id, {'status': 'failed', 'other_info': 3})
    else:
        ai4e_service.api_task_manager.CompleteTask(task_id, {'status': 'complete', 'other_info': 2})


# As CameraTraps' batch API v4 scaffold: the async function starts a thread that
# monitors the cluster job and returns; the thread completes the task later.
@ai4e_service.api_async_func(
    api_path = '/example',
    methods = ['POST'],
    maximum_concurrent_requests = 3,
    content_types = ['application/json'],
    content_max_length = 1000,
    trace_name = 'post:my_long_running_funct')
def default_post(*args, **kwargs):
    taskId = kwargs.get('taskId')
    ai4e_service.api_task_manager.UpdateTaskStatus(taskId, 'running model')
    monitoring_kwargs = {'task_id': taskId, 'fail': 'fail' in request.args}
    monitoring_thread = Thread(target=monitor_aml_job, kwargs=monitoring_kwargs)
    monitoring_thread.start()


if __name__ == '__main__':
    app.run()
