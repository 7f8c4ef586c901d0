// The decision record's three alerts (5xx rate, p95 latency, Azure OpenAI errors), sent to
// one action group. The first two read App Service's own HTTP logs (diagnostic setting in
// appservice.bicep), so they work whatever the app's telemetry does.

param name string
param location string
param tags object
param workspaceId string
param appId string
param openAiId string
param alertEmail string
@description('Alert when more than this percentage of requests in 15 minutes answered 5xx.')
param serverErrorPercent int = 5
@description('Alert when the 95th percentile of request time over 15 minutes exceeds this (ms).')
param p95LatencyMs int = 2000
@description('Alert when Azure OpenAI answered more than this many 429/5xx in 15 minutes.')
param openAiErrorCount int = 10

resource team 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${name}-ops'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'clinai-ops'
    enabled: true
    emailReceivers: [
      { name: 'operations', emailAddress: alertEmail, useCommonAlertSchema: true }
    ]
  }
}

// At least 20 requests, so that one failed health probe at night is not a page.
var serverErrorQuery = '''
AppServiceHTTPLogs
| where _ResourceId =~ '{app}'
| summarize total = count(), failed = countif(ScStatus >= 500)
| where total >= 20 and failed * 100.0 / total > {percent}
'''

// AI routes wait for the model (up to LLM_TIMEOUT_SECONDS, streamed or not): left out.
var latencyQuery = '''
AppServiceHTTPLogs
| where _ResourceId =~ '{app}'
| where not(CsMethod == 'POST' and (CsUriStem endswith '/note-drafts' or CsUriStem endswith '/messages'))
| summarize total = count(), p95 = percentile(TimeTaken, 95)
| where total >= 20 and p95 > {ms}
'''

resource serverErrors 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${name}-http-5xx-rate'
  location: location
  tags: tags
  properties: {
    displayName: 'API: 5xx rate above ${serverErrorPercent}%'
    severity: 1
    enabled: true
    scopes: [ workspaceId ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: replace(replace(serverErrorQuery, '{app}', appId), '{percent}', string(serverErrorPercent))
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    autoMitigate: true
    actions: { actionGroups: [ team.id ] }
  }
}

resource latency 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${name}-http-p95-latency'
  location: location
  tags: tags
  properties: {
    displayName: 'API: p95 latency above ${p95LatencyMs} ms'
    severity: 2
    enabled: true
    scopes: [ workspaceId ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: replace(replace(latencyQuery, '{app}', appId), '{ms}', string(p95LatencyMs))
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    autoMitigate: true
    actions: { actionGroups: [ team.id ] }
  }
}

// Throttling (429) and server errors of Azure OpenAI itself, from its platform metrics.
resource openAiErrors 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${name}-openai-errors'
  location: 'global'
  tags: tags
  properties: {
    description: 'Azure OpenAI answered 429 or 5xx more than ${openAiErrorCount} times in 15 minutes.'
    severity: 2
    enabled: true
    scopes: [ openAiId ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'errors'
          metricNamespace: 'Microsoft.CognitiveServices/accounts'
          metricName: 'AzureOpenAIRequests'
          dimensions: [
            { name: 'StatusCode', operator: 'Include', values: [ '429', '500', '502', '503', '504' ] }
          ]
          operator: 'GreaterThan'
          threshold: openAiErrorCount
          timeAggregation: 'Total'
        }
      ]
    }
    autoMitigate: true
    actions: [ { actionGroupId: team.id } ]
  }
}
