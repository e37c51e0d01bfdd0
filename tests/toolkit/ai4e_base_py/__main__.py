# A service written for the AI for Earth API framework, as the framework's
# documentation (seed 000) describes its base-py example: AI4E's module names,
# `APIService` on a Flask app, a long-running POST /example and a sync GET
# /echo/<text>. It runs here unchanged on the toolkit's compatibility modules:
# `app.run()` at the end serves it on $PORT with the toolkit's drain.
# Not changed to this project's style on purpose: it is AI4E user code.
# Not in the original: SLEEP (it slept 10 s) keeps the tests fast, a body with
# "fail" makes the model raise, echo tracks a metric, and /slow_echo/<text> tests a limit on a
# parameterised route (AI4E compared the literal path, so it never applied).
from os import getenv
from time import sleep

from ai4e_app_insights_wrapper import AI4EAppInsights
from ai4e_service import APIService
from flask import Flask

print('Creating Application')
app = Flask(__name__)

log = AI4EAppInsights()

with app.app_context():
    ai4e_service = APIService(app, log)


def process_request_data(request):
    return_values = {'data': None}
    try:
        return_values['data'] = request.get_json()
    except:  # noqa: E722 - as AI4E's example wrote it
        log.log_error('Unable to load the request data')
    return return_values


def run_model(taskId, body):
    ai4e_service.api_task_manager.UpdateTaskStatus(taskId, 'running model')
    log.log_debug('Running model', taskId)
    if body.get('fail'):
        raise RuntimeError('model exploded')
    sleep(float(getenv('SLEEP', '0.5')))


@ai4e_service.api_async_func(
    api_path='/example',
    methods=['POST'],
    request_processing_function=process_request_data,
    maximum_concurrent_requests=3,
    content_types=['application/json'],
    content_max_length=1000,
    trace_name='post:my_long_running_funct')
def default_post(*args, **kwargs):
    taskId = kwargs.get('taskId')
    log.log_debug('Started task', taskId)
    request_json = kwargs.get('data')
    if not request_json:
        ai4e_service.api_task_manager.FailTask(
            taskId, 'Task failed - Body was empty or could not be parsed.')
        return -1
    run_model(taskId, request_json)
    log.log_debug('Completed task', taskId)
    ai4e_service.api_task_manager.CompleteTask(taskId, 'completed')


@ai4e_service.api_sync_func(api_path='/echo/<string:text>', methods=['GET'],
                            maximum_concurrent_requests=1000, trace_name='get:echo',
                            kwargs={'text'})
def echo(*args, **kwargs):
    log.track_metric('echo_length', len(kwargs['text']))
    return 'Echo: ' + kwargs['text']


@ai4e_service.api_sync_func(api_path='/slow_echo/<text>', methods=['GET'],
                            maximum_concurrent_requests=1, trace_name='get:slow_echo')
def slow_echo(*args, **kwargs):
    sleep(float(getenv('SLEEP', '0.5')))
    return 'Echo: ' + kwargs['text']


if __name__ == '__main__':
    app.run()
